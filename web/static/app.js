// Live job progress: poll the job's API resource (with the session cookie) until it ends.
(function () {
  "use strict";
  const FINISHED = ["succeeded", "failed", "cancelled"];

  function follow(section) {
    const url = section.dataset.jobUrl;
    const state = section.querySelector(".job-state");
    const message = section.querySelector(".job-message");
    const bar = section.querySelector(".job-progress");
    const count = section.querySelector(".job-count");
    const result = section.querySelector(".job-result");

    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => response.json())
        .then((job) => {
          state.textContent = job.state;
          message.textContent = job.message || "";
          if (job.total) { bar.max = job.total; }
          bar.value = job.done;
          count.textContent = job.total ? job.done + " / " + job.total : String(job.done);
          if (job.result && job.result.model_id) {
            result.textContent = "model " + job.result.model_id;
          }
          if (!FINISHED.includes(job.state)) { setTimeout(tick, 700); }
        })
        .catch(() => setTimeout(tick, 2000));
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-job-url]").forEach(follow);
  });
})();

// The review queue: j/k move between rows, s and h label the selected row, o opens it.
(function () {
  "use strict";

  function review(table) {
    const rows = Array.from(table.querySelectorAll("[data-review-row]"));
    if (!rows.length) { return; }
    let current = 0;

    function select(index) {
      rows[current].classList.remove("selected");
      current = Math.max(0, Math.min(rows.length - 1, index));
      rows[current].classList.add("selected");
      rows[current].scrollIntoView({ block: "nearest" });
    }

    function press(label) {
      const button = rows[current].querySelector('[data-label="' + label + '"]');
      if (button) { button.click(); }
    }

    select(0);
    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey) { return; }
      if (["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName)) { return; }
      const actions = {
        j: () => select(current + 1),
        k: () => select(current - 1),
        s: () => press("spam"),
        h: () => press("ham"),
        o: () => rows[current].querySelector("[data-open]").click(),
      };
      if (actions[event.key]) {
        event.preventDefault();
        actions[event.key]();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-review]").forEach(review);
  });
})();
