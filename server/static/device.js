"use strict";
// Device page: the 24-hour telemetry chart and remote commands with their acknowledgements.
(function () {
  const Loa = window.Loa;

  // -- chart: temperature, signal and disk on their own scales, time along the bottom ------
  const canvas = document.getElementById("telemetry-chart");
  const SERIES = [
    { key: "cpu_temp_c", label: "chart.temp", color: "#b3261e", min: 20, max: 90 },
    { key: "signal_dbm", label: "chart.signal", color: "#1d5c8f", min: -120, max: -40 },
    { key: "disk_used_pct", label: "chart.disk", color: "#6b4fa1", min: 0, max: 100 },
  ];

  function drawChart(points) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    const pad = 28;
    ctx.clearRect(0, 0, w, h);
    ctx.font = "14px sans-serif";
    ctx.fillStyle = "#555";
    if (!points.length) {
      ctx.fillText(Loa.t("js.no_data"), pad, h / 2);
      return;
    }
    const t0 = Date.parse(points[0].at);
    const t1 = Math.max(Date.parse(points[points.length - 1].at), t0 + 60000);
    ctx.strokeStyle = "#ddd";
    for (let i = 0; i <= 4; i++) {
      const y = pad + ((h - 2 * pad) * i) / 4;
      ctx.beginPath();
      ctx.moveTo(pad, y);
      ctx.lineTo(w - pad, y);
      ctx.stroke();
    }
    const fmt = function (ms) {
      return new Date(ms).toLocaleTimeString("vi-VN", { hour: "2-digit", minute: "2-digit", timeZone: "Asia/Ho_Chi_Minh" });
    };
    ctx.fillText(fmt(t0), pad, h - 6);
    ctx.fillText(fmt(t1), w - pad - 40, h - 6);
    SERIES.forEach(function (s) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      let started = false;
      points.forEach(function (p) {
        const v = p[s.key];
        if (typeof v !== "number") return;
        const x = pad + ((w - 2 * pad) * (Date.parse(p.at) - t0)) / (t1 - t0);
        const frac = Math.min(Math.max((v - s.min) / (s.max - s.min), 0), 1);
        const y = h - pad - (h - 2 * pad) * frac;
        if (started) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        started = true;
      });
      ctx.stroke();
      ctx.fillStyle = s.color;
      points.forEach(function (p) {
        const v = p[s.key];
        if (typeof v !== "number") return;
        const x = pad + ((w - 2 * pad) * (Date.parse(p.at) - t0)) / (t1 - t0);
        const frac = Math.min(Math.max((v - s.min) / (s.max - s.min), 0), 1);
        ctx.beginPath();
        ctx.arc(x, h - pad - (h - 2 * pad) * frac, 3, 0, 2 * Math.PI);
        ctx.fill();
      });
    });
    canvas.dataset.points = String(points.length);
  }

  async function loadChart() {
    try {
      const history = await Loa.api("GET", canvas.dataset.url);
      drawChart(history.points);
    } catch (err) {
      Loa.failed(err);
    }
  }
  if (canvas) {
    loadChart();
    window.setInterval(loadChart, 60000);
  }

  // -- self-test: a server-side form; say first that the horns will play a sweep -----------
  const selftest = document.getElementById("selftest-form");
  if (selftest) {
    selftest.addEventListener("submit", function (event) {
      if (!window.confirm(selftest.dataset.confirm)) event.preventDefault();
    });
  }

  // -- commands ---------------------------------------------------------------------------
  const box = document.getElementById("command-buttons");
  if (!box) return;
  const names = JSON.parse(document.getElementById("command-names").textContent);
  const table = document.querySelector("#command-table tbody");

  function cell(label, content) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content;
    return td;
  }

  // An offline device cannot answer: say so, and until when the command waits for it.
  function detail(c) {
    if (c.status === "sent" && box.dataset.online !== "yes") {
      const until = new Date(c.expires_at).toLocaleTimeString("vi-VN", {
        hour: "2-digit", minute: "2-digit", hour12: false, timeZone: "Asia/Ho_Chi_Minh",
      });
      const note = document.createElement("span");
      note.className = "cmd-offline";
      note.textContent = Loa.t("cmd.offline_wait").replace("{time}", until);
      return note;
    }
    if (!c.detail) return "";
    const code = document.createElement("code");
    code.className = "tech";
    code.textContent = c.detail; // the device's own words, for technicians
    return code;
  }

  function render(commands) {
    const labels = Array.from(document.querySelectorAll("#command-table th")).map(function (th) {
      return th.textContent;
    });
    table.textContent = "";
    commands.forEach(function (c) {
      const tr = document.createElement("tr");
      tr.dataset.status = c.status;
      const badge = document.createElement("span");
      badge.className = "badge cmd-" + c.status;
      badge.textContent = Loa.t("cmd.status." + c.status);
      const when = new Date(c.created_at).toLocaleTimeString("vi-VN", { timeZone: "Asia/Ho_Chi_Minh" });
      tr.append(cell(labels[0], when), cell(labels[1], names[c.name] || c.name), cell(labels[2], badge), cell(labels[3], detail(c)));
      table.appendChild(tr);
    });
  }

  async function poll(rounds) {
    const commands = await Loa.api("GET", box.dataset.url + "?limit=10");
    render(commands);
    if (rounds > 0 && commands.some(function (c) { return c.status === "sent"; })) {
      window.setTimeout(function () { poll(rounds - 1); }, 1000);
    }
  }

  box.addEventListener("click", async function (event) {
    const button = event.target.closest("[data-command]");
    if (!button) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const body = { name: button.dataset.command };
    if (body.name === "set_volume") body.volume = Number(document.getElementById("volume-input").value);
    if (body.name === "test_tone") body.seconds = Number(button.dataset.seconds || 3);
    button.disabled = true;
    try {
      await Loa.api("POST", box.dataset.url, body);
      await poll(60);
    } catch (err) {
      Loa.failed(err);
    } finally {
      button.disabled = false;
    }
  });
})();
