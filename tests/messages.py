"""Hand-written mail for tests: the labeled fixture set as .eml files, and as many distinct
spam- and ham-like messages as a test needs."""

from __future__ import annotations

import json
import random
from email.message import EmailMessage
from pathlib import Path

import numpy as np

from tests.conftest import FIXTURES

LABELED = FIXTURES / "labeled.jsonl"


def as_eml(subject: str, text: str, sender: str = "someone@example.com") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "me@example.com"
    message["Subject"] = subject
    message.set_content(text)
    return bytes(message)


def write_labeled_mail(folder: Path) -> int:
    """The labeled fixture set as ``folder/spam/*.eml`` and ``folder/ham/*.eml`` (for
    ``spamsift import --label-from-path``); returns how many messages were written."""
    records = [json.loads(line) for line in LABELED.read_text().splitlines()]
    for record in records:
        directory = folder / record["label"]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{record['id']}.eml").write_bytes(as_eml(record["subject"],
                                                               record["text"]))
    return len(records)


_SPAM = [
    ("You have won {amount}", "Claim your {amount} prize today: send your bank details and a "
     "small processing fee to our agent. Offer {n} ends tonight."),
    ("Cheap meds, order {n}", "Lowest prices on pills, no prescription needed. Click now, "
     "discreet shipping for order number {n}. Limited stock!"),
    ("Make {amount} from home", "Work from home and earn {amount} a week with this one weird "
     "trick. Reply with your details, reference {n}."),
]
_HAM = [
    ("Notes from meeting {n}", "Thanks everyone. We agreed to move the release and {name} will "
     "update the migration checklist before Thursday (item {n})."),
    ("Re: build {n} failing", "The flaky test was a fixture clock; {name} pinned it and the "
     "build passes again. Can you rerun CI for change {n}?"),
    ("Lunch on {day}?", "Are you free for lunch on {day}? {name} suggested the noodle place "
     "near the office. Table for {n}."),
]
_NAMES = ["Priya", "Jonas", "Amara", "Luis", "Mei", "Tomasz"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def generated_message(n: int) -> bytes:
    """Message ``n``: spam-like for even ``n``, ham-like for odd; distinct for every ``n``."""
    pick = random.Random(n)
    subject, body = pick.choice(_SPAM if n % 2 == 0 else _HAM)
    fields = {"n": n, "amount": f"${pick.randrange(1_000, 90_000):,}",
              "name": pick.choice(_NAMES), "day": pick.choice(_DAYS)}
    message = EmailMessage()
    message["From"] = f"sender{n}@example.{'biz' if n % 2 == 0 else 'org'}"
    message["To"] = "me@example.com"
    message["Subject"] = subject.format(**fields)
    message["Message-ID"] = f"<generated-{n}@tests.spamsift>"
    message.set_content(body.format(**fields))
    return bytes(message)


def write_generated_mail(folder: Path, count: int, first: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(first, first + count):
        path = folder / f"{n:05d}.eml"
        path.write_bytes(generated_message(n))
        paths.append(path)
    return paths


def labeled_texts() -> tuple[list[str], np.ndarray]:
    """The labeled fixture as model input (subject and body) and labels (1 = spam)."""
    records = [json.loads(line) for line in LABELED.read_text().splitlines()]
    texts = [f"{r['subject']}\n\n{r['text']}" for r in records]
    return texts, np.array([r["label"] == "spam" for r in records], dtype=int)
