from ml.normalise import normalise_text


def test_urls_keep_their_host():
    assert normalise_text("Go to https://WWW.Example.com/a?b=1#x now") == \
        "Go to URL example.com now"
    assert normalise_text("see www.shop.example.org/offer.") == "see URL shop.example.org"


def test_addresses_keep_their_domain():
    assert normalise_text("Write to Bob.Smith+x@Mail.Example.com.") == \
        "Write to EMAIL mail.example.com."


def test_numbers_and_prices():
    assert normalise_text("Pay $1,299.00 for 3 items, order 88412.") == \
        "Pay $NUM for NUM items, order NUM."


def test_long_tokens_and_words_with_digits():
    assert normalise_text("id " + "aZ09" * 10 + " mp3 player") == "id LONGTOKEN mp3 player"


def test_plain_text_is_unchanged():
    text = "Hello,\n\nthe meeting moves to Tuesday.\n"
    assert normalise_text(text) == text
