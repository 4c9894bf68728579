"use strict";
// New-programme form: build the API body, check conflicts, save, submit, or broadcast an emergency.
(function () {
  const Loa = window.Loa;
  const form = document.getElementById("programme-form");
  if (!form) return;
  const OFFSET = "+07:00"; // Asia/Ho_Chi_Minh has no daylight saving time

  const clockOffset = Number(form.dataset.serverNow || Date.now()) - Date.now();

  function showMode() {
    const checked = form.querySelector("input[name=mode]:checked");
    if (!checked) return;
    const mode = checked.value;
    form.querySelectorAll("[data-mode]").forEach(function (el) {
      el.hidden = el.dataset.mode !== mode;
    });
  }
  form.querySelectorAll("input[name=mode]").forEach(function (r) {
    r.addEventListener("change", showMode);
  });

  // Dates are typed dd/mm/yyyy and times hh:mm (24 h) whatever the browser's language.
  function isoDay(text) {
    const found = /^\s*(\d{1,2})\/(\d{1,2})\/(\d{4})\s*$/.exec(text || "");
    if (!found) throw new Error(Loa.t("js.bad_date"));
    const [d, m, y] = [Number(found[1]), Number(found[2]), Number(found[3])];
    const check = new Date(Date.UTC(y, m - 1, d));
    if (check.getUTCMonth() !== m - 1 || check.getUTCDate() !== d) throw new Error(Loa.t("js.bad_date"));
    return y + "-" + String(m).padStart(2, "0") + "-" + String(d).padStart(2, "0");
  }

  function clock(text) {
    const found = /^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$/.exec(text || "");
    if (!found) throw new Error(Loa.t("js.bad_date"));
    return found[1].padStart(2, "0") + ":" + found[2];
  }

  // The weekly editor: the days ticked and the times typed, as an RFC 5545 rule.
  function weeklyRule(f) {
    const days = f.getAll("weekday");
    const times = String(f.get("times") || "").split(/[,;\s]+/).filter(Boolean).map(clock);
    const hours = Array.from(new Set(times.map(function (t) { return Number(t.slice(0, 2)); })));
    const minutes = Array.from(new Set(times.map(function (t) { return Number(t.slice(3)); })));
    // BYHOUR × BYMINUTE is every combination: one minute value keeps it to the times typed.
    if (!days.length || !times.length || minutes.length !== 1) throw new Error(Loa.t("js.bad_week"));
    hours.sort(function (a, b) { return a - b; });
    return "FREQ=WEEKLY;BYDAY=" + days.join(",") + ";BYHOUR=" + hours.join(",") +
      ";BYMINUTE=" + minutes[0] + ";BYSECOND=0";
  }

  const preset = form.querySelector("select[name=recurrence_preset]");
  const editor = document.getElementById("week-editor");
  function showEditor() {
    if (preset && editor) editor.hidden = preset.value !== "custom";
  }
  if (preset) preset.addEventListener("change", showEditor);
  showEditor();

  function body(emergency) {
    const f = new FormData(form);
    const b = {
      title: (f.get("title") || "").trim(),
      description: f.get("description") || "",
      display_text: (f.get("display_text") || "").trim(),
      clip_ids: f.getAll("clip_ids").map(Number),
      zone_ids: f.getAll("zone_ids").map(Number),
      priority: emergency ? "emergency" : f.get("priority") || "normal",
    };
    if (f.get("org_unit_id")) b.org_unit_id = Number(f.get("org_unit_id"));
    if (!f.get("mode")) {
      // The operator's form has no dates: an emergency plays now (by the server's clock).
      b.start = new Date(Date.now() + clockOffset + 5000).toISOString();
    } else if (f.get("mode") === "once") {
      b.start = isoDay(f.get("date")) + "T" + clock(f.get("time")) + ":00" + OFFSET;
    } else {
      if (f.get("recurrence_preset") === "custom") b.rrule = weeklyRule(f);
      else b.recurrence_preset = f.get("recurrence_preset");
      b.dtstart = isoDay(f.get("from")) + "T00:00:00";
      if ((f.get("until") || "").trim()) b.valid_until = isoDay(f.get("until")) + "T23:59:59" + OFFSET;
    }
    return b;
  }

  const box = document.getElementById("conflicts");
  async function check(emergency) {
    const report = await Loa.api("POST", "/api/v1/programmes/check", body(emergency));
    box.textContent = "";
    const head = document.createElement("p");
    head.className = report.conflicts.length ? "error" : "ok";
    head.textContent = report.conflicts.length ? Loa.t("js.conflicts") : Loa.t("js.no_conflicts");
    box.appendChild(head);
    const list = document.createElement("ul");
    report.conflicts.forEach(function (c) {
      const li = document.createElement("li");
      // The API's message is English (for scripts); say it from the fields, in the page's words.
      const at = new Date(c.first_overlap_start).toLocaleString("vi-VN", {
        timeZone: "Asia/Ho_Chi_Minh", hour12: false, day: "2-digit", month: "2-digit",
        year: "numeric", hour: "2-digit", minute: "2-digit",
      });
      li.textContent = Loa.t("js.conflict_item").replace("{title}", c.other_title).replace("{at}", at);
      list.appendChild(li);
    });
    box.appendChild(list);
    return report.conflicts.length === 0;
  }

  const checkButton = document.getElementById("check-button");
  if (checkButton) {
    checkButton.addEventListener("click", function () {
      check(false).catch(Loa.failed);
    });
  }

  async function save(submit) {
    const p = await Loa.api("POST", "/api/v1/programmes", body(false));
    if (submit) await Loa.api("POST", "/api/v1/programmes/" + p.id + "/submit");
    window.location.href = "/programmes/" + p.id;
  }
  ["save-button", "submit-button"].forEach(function (id) {
    const button = document.getElementById(id);
    if (!button) return;
    button.addEventListener("click", async function () {
      button.disabled = true;
      try {
        if (button.dataset.submit === "1" && !(await check(false))) return;
        await save(button.dataset.submit === "1");
      } catch (err) {
        Loa.failed(err);
      } finally {
        button.disabled = false;
      }
    });
  });

  const emergency = document.getElementById("emergency-button");
  if (emergency) {
    emergency.addEventListener("click", async function () {
      if (!window.confirm(emergency.dataset.confirm)) return;
      emergency.disabled = true;
      try {
        const b = body(true);
        b.approve_now = true;
        const p = await Loa.api("POST", "/api/v1/programmes", b);
        window.location.href = "/programmes/" + p.id;
      } catch (err) {
        Loa.failed(err);
      } finally {
        emergency.disabled = false;
      }
    });
  }
  showMode();
})();
