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
