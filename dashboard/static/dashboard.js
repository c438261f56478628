/* AI-Mesh live dashboard: renders the server's snapshots (SSE `snapshot` events) with Chart.js.
   Untrusted text (summaries, findings, reasons) is only ever set through textContent. */
(function () {
  "use strict";

  const AGENT_ORDER = ["producer", "consumer", "sandbox", "reviewer", "supervisor"];
  const COLORS = {
    blue: "#2f6fde", blueFill: "rgba(47,111,222,0.15)", orange: "#e8833a", green: "#1f9d55",
    red: "#d64545", grey: "#9aa4b2", purple: "#7e57c2", teal: "#169b9b",
  };
  const num = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const num1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const num2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  const $ = (sel) => document.querySelector(sel);
  const pad = (n) => String(n).padStart(2, "0");
  function clock(epochS, withSeconds = true) {
    const d = new Date(epochS * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + (withSeconds ? ":" + pad(d.getSeconds()) : "");
  }
  // a readable time axis: ticks on round steps, labelled to the step's resolution (never repeated)
  const TIME_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
    21600, 43200, 86400];
  const DAY_S = 86400;
  function timeStep(spanS, maxTicks) {
    const step = TIME_STEPS_S.find((s) => spanS / s <= maxTicks - 1);
    return step || DAY_S * Math.ceil(spanS / DAY_S / (maxTicks - 1));
  }
  function timeLabel(epochS, stepS) {
    const d = new Date(epochS * 1000);
    if (stepS >= DAY_S) return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
    return clock(epochS, stepS < 60);
  }
  function duration(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return seconds / 60 + " min";
    if (seconds < DAY_S) return seconds / 3600 + " h";
    return seconds / DAY_S + " d";
  }
  function timeTicks(axis) {  // Chart.js afterBuildTicks: epoch milliseconds on round steps
    const stepS = timeStep(Math.max(1, (axis.max - axis.min) / 1000), 8);
    axis.aimeshStepS = stepS;
    const ticks = [];
    for (let v = Math.ceil(axis.min / 1000 / stepS) * stepS; v * 1000 <= axis.max; v += stepS) {
      ticks.push({ value: v * 1000 });
    }
    axis.ticks = ticks;
  }
  const ms = (v) => num.format(v) + " ms";
  const pct = (v) => (v === null || v === undefined ? "–" : Math.round(v * 100) + "%");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fillTable(id, rows, emptyText, colspan) {
    const body = document.querySelector("#" + id + " tbody");
    if (!rows.length) {
      if (emptyText === null) { body.replaceChildren(); return; }
      body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: String(colspan), text: emptyText })));
      return;
    }
    body.replaceChildren(...rows);
  }

  function sortAgents(agents) {
    const rank = (a) => { const i = AGENT_ORDER.indexOf(a.agent); return i < 0 ? AGENT_ORDER.length : i; };
    return [...agents].sort((a, b) => rank(a) - rank(b) || a.agent.localeCompare(b.agent));
  }

  // ------------------------------------------------------------------ charts

  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.size = 11;
  Chart.defaults.color = "#4a5563";

  const charts = {
    reward: new Chart($("#chart-reward"), {
      type: "line",
      data: { datasets: [
        { label: "reward per task", data: [], showLine: false, pointRadius: 4, pointHoverRadius: 6,
          borderColor: COLORS.blue, backgroundColor: COLORS.blue },
        { label: "rolling mean (10 tasks)", data: [], pointRadius: 0, borderWidth: 2, tension: 0.25,
          borderColor: COLORS.orange, backgroundColor: COLORS.orange },
      ] },
      options: {
        parsing: false,
        scales: {
          x: { type: "linear", afterBuildTicks: timeTicks,
               ticks: { callback: function (v) { return timeLabel(v / 1000, this.aimeshStepS); } } },
          y: { min: 0, max: 1, title: { display: true, text: "reward" } },
        },
        plugins: { tooltip: { callbacks: {
          title: (items) => items.length ? clock(items[0].parsed.x / 1000) : "",
          label: (item) => item.dataset.label + ": " + num2.format(item.parsed.y) +
            (item.raw.task ? " (" + item.raw.task + ")" : ""),
        } } },
      },
    }),
    throughput: new Chart($("#chart-throughput"), {
      type: "bar",
      data: { labels: [], datasets: [
        { label: "passed", data: [], backgroundColor: COLORS.green, stack: "t" },
        { label: "failed", data: [], backgroundColor: COLORS.red, stack: "t" },
        { label: "outcome unknown", data: [], backgroundColor: COLORS.grey, stack: "t" },
      ] },
      options: { scales: { x: { stacked: true, ticks: { maxTicksLimit: 10 } },
                           y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
    }),
    latency: new Chart($("#chart-latency"), {
      type: "bar",
      data: { labels: [], datasets: [
        { label: "mean", data: [], backgroundColor: COLORS.blue },
        { label: "p95 (last 500 steps)", data: [], backgroundColor: COLORS.purple },
      ] },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "ms" } } } },
    }),
    tokens: new Chart($("#chart-tokens"), {
      type: "bar",
      data: { labels: [], datasets: [
        { label: "tokens per step", data: [], backgroundColor: COLORS.teal, yAxisID: "y" },
        { label: "memory hits (total)", data: [], backgroundColor: COLORS.orange, yAxisID: "y1" },
      ] },
      options: { scales: {
        y: { beginAtZero: true, position: "left", title: { display: true, text: "tokens / step" } },
        y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, ticks: { precision: 0 },
              title: { display: true, text: "memory hits" } },
      } },
    }),
  };
  window.aimeshCharts = charts; // for tests and for poking around in devtools

  function renderCharts(snap, agents) {
    const reward = charts.reward.data.datasets;
    reward[0].data = snap.reward.map((p) => ({ x: p.t * 1000, y: p.reward, task: p.task_id }));
    reward[1].data = snap.reward.map((p) => ({ x: p.t * 1000, y: p.mean }));
    const x = charts.reward.options.scales.x;
    if (snap.reward.length) {  // the axis spans the data, with a margin (a minute around one point)
      const first = snap.reward[0].t, last = snap.reward[snap.reward.length - 1].t;
      const margin = last > first ? (last - first) * 0.04 : 30;
      x.min = (first - margin) * 1000;
      x.max = (last + margin) * 1000;
    } else {
      x.min = undefined;
      x.max = undefined;
    }
    charts.reward.update("none");

    const tp = charts.throughput.data, buckets = snap.throughput.buckets, bucketS = snap.throughput.bucket_s;
    tp.labels = buckets.map((b) => timeLabel(b.t, bucketS));
    tp.datasets[0].data = buckets.map((b) => b.passed);
    tp.datasets[1].data = buckets.map((b) => b.failed);
    tp.datasets[2].data = buckets.map((b) => b.unknown);
    charts.throughput.update("none");
    setText("throughput-window", "(tasks finished per " + duration(bucketS) + ")");

    const names = agents.map((a) => a.agent);
    const lat = charts.latency.data;
    lat.labels = names;
    lat.datasets[0].data = agents.map((a) => a.latency_mean_ms);
    lat.datasets[1].data = agents.map((a) => a.latency_p95_ms);
    charts.latency.update("none");

    const tok = charts.tokens.data;
    tok.labels = names;
    tok.datasets[0].data = agents.map((a) => a.tokens_mean);
    tok.datasets[1].data = agents.map((a) => a.memory_hits);
    charts.tokens.update("none");
  }

  // ------------------------------------------------------------------ page

  function setText(testid, text) {
    const node = document.querySelector('[data-testid="' + testid + '"]');
    if (node.textContent !== text) node.textContent = text;
  }

  function badge(kind, text) {
    return el("span", { class: "badge " + (kind || "none"), text: text || kind || "–" });
  }

  function renderTotals(snap) {
    const t = snap.totals;
    setText("kpi-tasks-finished", num.format(t.tasks_finished));
    setText("kpi-outcomes", t.tasks_passed + " passed · " + t.tasks_failed + " failed" +
      (t.tasks_unknown ? " · " + t.tasks_unknown + " unknown" : ""));
    setText("kpi-tasks-per-min", num1.format(t.tasks_per_min));
    setText("kpi-in-progress", num.format(t.tasks_in_progress) + " in progress" +
      (t.tasks_stalled ? " · " + num.format(t.tasks_stalled) + " stalled" : ""));
    setText("kpi-pass-rate", pct(t.pass_rate));
    setText("kpi-pass-detail", t.pass_rate === null ? "no outcomes yet" :
      t.tasks_passed + " of " + (t.tasks_passed + t.tasks_failed) + " tasks passed");
    setText("kpi-mean-reward", t.mean_reward === null ? "–" : num2.format(t.mean_reward));
    setText("kpi-tokens", num.format(t.tokens));
    setText("kpi-events", num.format(t.events) + " steps");
    setText("kpi-memory-hits", num.format(t.memory_hits));
    setText("kpi-reports", num.format(t.reports));
    setText("kpi-verdicts", "ok " + snap.verdicts.ok + " · warn " + snap.verdicts.warn + " · flag " + snap.verdicts.flag);
    setText("kpi-rejected", num.format(t.rejected));
    setText("kpi-duplicates", num.format(t.duplicates) + " duplicates skipped");
  }

  function renderAgents(agents) {
    fillTable("agents", agents.map((a) => el("tr", { "data-agent": a.agent },
      el("td", { class: "mono", text: a.agent }),
      el("td", { class: "num", "data-col": "steps", text: num.format(a.steps) }),
      el("td", { class: "num", "data-col": "latency_mean_ms", text: ms(a.latency_mean_ms) }),
      el("td", { class: "num", "data-col": "latency_p50_ms", text: ms(a.latency_p50_ms) }),
      el("td", { class: "num", "data-col": "latency_p95_ms", text: ms(a.latency_p95_ms) }),
      el("td", { class: "num", "data-col": "latency_last_ms", text: ms(a.latency_last_ms) }),
      el("td", { class: "num", "data-col": "tokens_total", text: num.format(a.tokens_total) }),
      el("td", { class: "num", "data-col": "tokens_mean", text: num1.format(a.tokens_mean) }),
      el("td", { class: "num", "data-col": "memory_hits", text: num.format(a.memory_hits) }),
      el("td", { class: "num", "data-col": "failed_steps", text: num.format(a.failed_steps) }),
    )), "no telemetry yet", 10);
  }

  let adapters = {};  // consumer.adapter version -> the adapter it names (from api/learning)

  function renderPrompts(prompts) {
    fillTable("prompts", prompts.map((p) => el("tr", { "data-agent": p.agent, "data-version": p.version },
      el("td", { class: "mono", text: p.agent }),
      el("td", { class: "mono" }, p.version,
        p.agent === "consumer.adapter" && adapters[p.version] ? " (" + adapters[p.version] + ")" : null,
        p.current ? el("span", { class: "current", text: " · in use" }) : null),
      el("td", { class: "num", text: num.format(p.steps) }),
      el("td", { text: clock(p.last_seen) }),
    )), "no prompt versions reported", 4);
  }

  function taskLink(taskId, runId, linked) {
    if (!linked) return el("td", { class: "mono", text: taskId });
    const params = new URLSearchParams({ task: taskId });
    if (runId) params.set("run", runId);
    return el("td", { class: "mono" }, el("a", { class: "task-link", href: "#" + params, text: taskId }));
  }

  function renderFailures(failures, detailed) {
    fillTable("failures", failures.map((f) => el("tr", { "data-task": f.task_id },
      el("td", { text: clock(f.at) }),
      taskLink(f.task_id, f.run_id, detailed.has(f.task_id + "\u0000" + f.run_id)),
      el("td", { text: f.source }),
      el("td", { class: "reason", text: f.reason }),
    )), "no failures", 4);
  }

  function renderReports(reports) {
    fillTable("reports", reports.map((r) => {
      const findings = r.findings.length ? el("ul", { class: "findings" }, ...r.findings.map((f) => el("li", { text: f }))) : null;
      return el("tr", { "data-task": r.task_id },
        el("td", { text: clock(r.at) }),
        taskLink(r.task_id, r.run_id, r.has_detail),
        el("td", {}, badge(r.verdict, r.verdict)),
        el("td", {}, badge(r.outcome || "unknown", r.outcome || "unknown")),
        el("td", { class: "num", text: r.reward === null ? "–" : num2.format(r.reward) }),
        el("td", { class: "num", text: r.attempts === null ? "–" : String(r.attempts) }),
        el("td", { class: "num", text: r.tokens_used === null ? "–" : num.format(r.tokens_used) }),
        el("td", { class: "num", text: r.wall_time_s === null ? "–" : num1.format(r.wall_time_s) + " s" }),
        el("td", { class: "reason" }, el("div", { class: "summary", text: r.summary }), findings),
      );
    }), "no reports yet", 9);
  }

  function renderBatches(batches) {
    fillTable("batches", batches.map((b) => el("tr", { "data-batch": b.batch_id },
      el("td", { text: clock(b.at) }),
      el("td", { class: "mono", text: b.batch_id }),
      el("td", {}, badge(b.verdict, b.verdict)),
      el("td", { class: "num", text: num.format(b.tasks) }),
      el("td", { class: "num", text: pct(b.pass_rate) }),
      el("td", { class: "num", text: num2.format(b.mean_reward) }),
      el("td", { class: "num", text: num.format(b.tokens_used) }),
      el("td", { class: "num", text: num1.format(b.wall_time_s) + " s" }),
      el("td", { class: "reason" }, el("div", { class: "summary", text: b.summary }),
        b.anomalies.length ? el("ul", { class: "findings" }, ...b.anomalies.map((a) => el("li", { text: a }))) : null),
    )), "no batch audits yet", 9);
  }

  function renderRejected(rejected) {
    $("#rejected-card").hidden = rejected.length === 0;
    fillTable("rejected", rejected.map((r) => el("tr", {},
      el("td", { text: clock(r.at) }),
      el("td", { class: "mono", text: r.topic }),
      el("td", { text: r.reason }),
      el("td", { class: "reason", text: r.detail }),
    )), null, 4);
  }

  function renderSource(source) {
    const pill = $("#source-status");
    pill.dataset.state = source.state;
    let text = "broker: " + source.state.replace("_", " ");
    if (source.bootstrap) text += " · " + source.bootstrap;
    if (source.state === "connected" && source.partitions) text += " · " + source.partitions + " partitions";
    pill.textContent = text;
    pill.title = source.detail || "";
  }

  function render(snap) {
    const agents = sortAgents(snap.agents);
    renderSource(snap.source);
    renderTotals(snap);
    renderAgents(agents);
    renderPrompts(snap.prompt_versions);
    const detailed = new Set(snap.reports.filter((r) => r.has_detail).map((r) => r.task_id + "\u0000" + r.run_id));
    renderFailures(snap.failures, detailed);
    renderReports(snap.reports);
    renderBatches(snap.batches);
    renderRejected(snap.rejected);
    renderCharts(snap, agents);
    setText("updated", "updated " + clock(snap.generated_at));
    document.body.dataset.version = String(snap.version);
  }

  // ------------------------------------------------------------------ learning (api/learning)

  const LEARNING_REFRESH_MS = 5000;

  function renderLearning(view) {
    adapters = view.adapters || {};
    fillTable("learning", view.rounds.map((r) => el("tr", { "data-prompt": r.prompt, "data-version": r.version },
      el("td", { text: clock(r.at) }),
      el("td", { class: "mono", text: r.prompt }),
      el("td", { class: "mono", text: r.version + (r.source ? " · " + r.source : "") }),
      el("td", { class: "mono reason", text: r.text || "(none)" }),
      el("td", {}, badge(r.decision === "promoted" ? "passed" : "failed", r.decision)),
      el("td", { class: "reason", text: r.detail }),
    )), "no learning rounds yet", 6);
  }

  async function refreshLearning() {
    try {
      const response = await fetch(new URL("api/learning", document.baseURI));
      if (response.ok) renderLearning(await response.json());
    } catch (err) {
      console.error("dashboard: cannot read the learning rounds", err);
    }
  }

  refreshLearning();
  setInterval(refreshLearning, LEARNING_REFRESH_MS);

  // ------------------------------------------------------------------ task detail (#task=ID&run=RUN)

  const SCORES = ["correctness", "efficiency", "readability", "adherence"];

  function renderDetail(d) {
    const outcome = d.outcome || "unknown";
    setText("detail-title", d.task_id);
    $('[data-testid="detail-outcome"]').replaceChildren(badge(outcome, outcome));
    setText("detail-status", "run " + d.run_id + " · status " + d.status + " · " + num.format(d.tokens_used) +
      " tokens" + (d.failed_at ? " · failed at the " + d.failed_at + ": " + (d.reason || "") : ""));
    setText("detail-signature", d.task ? d.task.signature : "(no task: the producer failed)");
    setText("detail-statement", d.task ? d.task.statement + "\n(" + d.task.category + ", difficulty " +
      d.task.difficulty + "; " + d.task.public_tests + " public and " + d.task.hidden_tests + " hidden tests)" : (d.error || ""));
    const report = d.report;
    setText("detail-report", report ? report.verdict + ": " + report.summary : "no report");
    $('[data-testid="detail-findings"]').replaceChildren(...(report ? report.findings : []).map((f) => el("li", { text: f })));
    const review = d.review;
    const rows = review ? [...SCORES.map((k) => [k, review.scores[k]]), ["reward", review.reward]] : [];
    $('[data-testid="detail-scores"] tbody').replaceChildren(...(rows.length ? rows.map(([k, v]) =>
      el("tr", { "data-score": k }, el("td", { text: k }), el("td", { class: "num", text: num2.format(v) }))) :
      [el("tr", { class: "empty" }, el("td", { text: "not reviewed" }))]));
    setText("detail-critique", review ? review.critique : "");
    $('[data-testid="detail-attempts"]').replaceChildren(...d.attempts.map((a) => {
      const verdict = a.passed === null ? "not tested" : (a.passed ? "passed" : "failed") +
        (a.test_counts ? " · " + a.test_counts : "") +
        (a.error_type ? " · " + a.error_type : "") + (a.timed_out ? " · timed out" : "");
      return el("div", { class: "attempt", "data-attempt": String(a.number) },
        el("h3", {}, "Attempt " + a.number + " ", badge(a.passed === null ? "unknown" : a.passed ? "passed" : "failed",
          a.passed === null ? "untested" : a.passed ? "passed" : "failed"),
          el("span", { class: "muted", "data-testid": "detail-verdict", text: " " + verdict })),
        el("pre", { class: "code", "data-testid": "detail-code", text: a.code }),
        a.feedback && !a.passed ? el("pre", { class: "code feedback", "data-testid": "detail-feedback", text: a.feedback }) : null,
      );
    }));
  }

  async function showDetail() {
    const panel = $("#task-detail");
    const params = new URLSearchParams(location.hash.slice(1));
    const taskId = params.get("task");
    if (!taskId) { panel.hidden = true; return; }
    const query = new URLSearchParams({ task_id: taskId });
    if (params.get("run")) query.set("run_id", params.get("run"));
    const response = await fetch(new URL("api/task?" + query, document.baseURI));
    if (!response.ok) {
      setText("detail-title", taskId);
      $('[data-testid="detail-attempts"]').replaceChildren();
      setText("detail-status", "no report of this task (yet, or any more)");
      panel.hidden = false;
      return;
    }
    renderDetail(await response.json());
    panel.hidden = false;
    panel.scrollIntoView({ block: "start" });
  }

  $('[data-testid="detail-close"]').addEventListener("click", (event) => {
    event.preventDefault();
    history.replaceState(null, "", location.pathname + location.search);
    $("#task-detail").hidden = true;
  });
  window.addEventListener("hashchange", showDetail);
  showDetail();

  // ------------------------------------------------------------------ stream

  function setStream(state) {
    const pill = $("#stream-status");
    pill.dataset.state = state;
    pill.textContent = "stream: " + state;
  }

  function connect() {
    const source = new EventSource(new URL("api/stream", document.baseURI));
    source.onopen = () => setStream("live");
    source.onerror = () => setStream(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
    source.addEventListener("snapshot", (event) => {
      setStream("live");
      try {
        render(JSON.parse(event.data));
      } catch (err) {
        console.error("dashboard: cannot render a snapshot", err);
      }
    });
  }

  connect();
})();
