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

  // The level and ramps only matter when the programme may duck (itself, or by its zones).
  const duckFields = document.getElementById("duck-fields");
  function showDuck() {
    const checked = form.querySelector("input[name=announcement_mode]:checked");
    if (duckFields && checked) duckFields.hidden = checked.value === "cut";
  }
  form.querySelectorAll("input[name=announcement_mode]").forEach(function (r) {
    r.addEventListener("change", showDuck);
  });

  // Shown as a positive drop ("giảm 18 dB"), sent as the negative level the API stores.
  function announcement(f, b) {
    if (f.get("announcement_mode") === null) return; // the operator's form has none
    b.announcement_mode = f.get("announcement_mode") || null;
    if (b.announcement_mode === "cut") return;
    const drop = Number(f.get("duck_drop"));
    const ramp = Number(f.get("duck_ramp_ms"));
    const box = document.getElementById("announce-editor");
    if (!Number.isFinite(drop) || drop < 3 || drop > 60 || !Number.isInteger(ramp) || ramp < 200 || ramp > 500) {
      throw new Error(box.dataset.duckBad);
    }
    b.duck_db = -drop;
    b.duck_ramp_ms = ramp;
  }

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

  // The items, in playing order: ticking a clip appends it, "add a relay" appends a relay.
  const editorBox = document.getElementById("items-editor");
  const list = document.getElementById("item-list");
  const controls = document.getElementById("item-controls");
  const relayTemplate = document.getElementById("relay-item");
  const totalBox = document.getElementById("items-total-value");
  const maxMinutes = Number(form.dataset.maxRelayMinutes || 240);
  const unitsAbove = JSON.parse(form.dataset.unitsAbove || "{}");

  // A length as m:ss, or h:mm:ss from an hour on.
  function length(seconds) {
    const s = Math.round(seconds);
    const ss = ":" + String(s % 60).padStart(2, "0");
    if (s < 3600) return Math.floor(s / 60) + ss;
    return Math.floor(s / 3600) + ":" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + ss;
  }

  function showTotal() {
    if (!totalBox) return;
    let seconds = 0;
    list.querySelectorAll("li").forEach(function (li) {
      if (li.dataset.kind === "clip") seconds += Number(li.dataset.duration) || 0;
      else {
        const minutes = Number(li.querySelector("[name=relay_minutes]").value);
        if (Number.isInteger(minutes) && minutes > 0 && minutes <= maxMinutes) seconds += minutes * 60;
      }
    });
    totalBox.textContent = length(seconds);
  }

  function withControls(li) {
    li.appendChild(controls.content.cloneNode(true));
    list.appendChild(li);
    showTotal();
    return li;
  }

  function clipBox(id) {
    return form.querySelector("input[name=clip_ids][value='" + Number(id) + "']");
  }

  form.querySelectorAll("input[name=clip_ids]").forEach(function (box) {
    box.addEventListener("change", function () {
      const row = list.querySelector("li[data-kind=clip][data-clip-id='" + Number(box.value) + "']");
      if (!box.checked) {
        if (row) row.remove();
        showTotal();
        return;
      }
      if (row) return;
      const li = document.createElement("li");
      li.className = "clip-item";
      li.dataset.kind = "clip";
      li.dataset.clipId = box.value;
      li.dataset.duration = box.dataset.duration;
      const title = document.createElement("span");
      title.textContent = box.dataset.title + " (" + length(Number(box.dataset.duration) || 0) + ") ";
      li.appendChild(title);
      withControls(li);
    });
  });

  // A relay source is usable by the owning unit when it belongs to that unit or one above it.
  function ownerUnit() {
    const owner = form.querySelector("select[name=org_unit_id]");
    return owner ? owner.value : form.dataset.ownUnit;
  }

  function fitSources() {
    const above = unitsAbove[ownerUnit()];
    if (!above) return;
    list.querySelectorAll("select[name=relay_source_id]").forEach(function (select) {
      Array.from(select.options).forEach(function (option) {
        option.hidden = option.disabled = !above.includes(Number(option.dataset.unit));
      });
      const current = select.options[select.selectedIndex];
      if (current && current.disabled) {
        const usable = Array.from(select.options).find(function (o) { return !o.disabled; });
        if (usable) select.value = usable.value;
      }
    });
  }
  const ownerSelect = form.querySelector("select[name=org_unit_id]");
  if (ownerSelect) ownerSelect.addEventListener("change", fitSources);

  const addRelay = document.getElementById("add-relay");
  if (addRelay) {
    addRelay.addEventListener("click", function () {
      const li = withControls(relayTemplate.content.firstElementChild.cloneNode(true));
      li.querySelector("[name=relay_minutes]").addEventListener("input", showTotal);
      fitSources();
      li.querySelector("select").focus();
    });
  }

  list.addEventListener("click", function (event) {
    const button = event.target.closest("button");
    if (!button) return;
    const li = button.closest("li");
    if (button.hasAttribute("data-remove")) {
      if (li.dataset.kind === "clip") {
        const box = clipBox(li.dataset.clipId);
        if (box) box.checked = false;
      }
      li.remove();
    } else if (button.dataset.move === "-1" && li.previousElementSibling) {
      list.insertBefore(li, li.previousElementSibling);
    } else if (button.dataset.move === "1" && li.nextElementSibling) {
      list.insertBefore(li.nextElementSibling, li);
    }
    showTotal();
  });

  function items() {
    return Array.from(list.querySelectorAll("li")).map(function (li) {
      if (li.dataset.kind === "clip") return { kind: "clip", clip_id: Number(li.dataset.clipId) };
      const input = li.querySelector("[name=relay_minutes]");
      const minutes = Number(input.value);
      if (input.value.trim() === "" || !Number.isInteger(minutes) || minutes < 1 || minutes > maxMinutes) {
        input.focus();
        throw new Error(editorBox.dataset.minutesBad);
      }
      const source = li.querySelector("select[name=relay_source_id]");
      const chosen = source.options[source.selectedIndex];
      if (!chosen || chosen.disabled) {
        source.focus();
        throw new Error(editorBox.dataset.ownerBad.replace("{source}", chosen ? chosen.textContent : ""));
      }
      return {
        kind: "relay",
        relay_source_id: Number(source.value),
        duration_s: minutes * 60,
        fallback_clip_id: Number(li.querySelector("select[name=fallback_clip_id]").value),
      };
    });
  }

  function body(emergency) {
    const f = new FormData(form);
    const b = {
      title: (f.get("title") || "").trim(),
      description: f.get("description") || "",
      display_text: (f.get("display_text") || "").trim(),
      items: items(),
      zone_ids: f.getAll("zone_ids").map(Number),
      priority: emergency ? "emergency" : f.get("priority") || "normal",
    };
    if (f.get("org_unit_id")) b.org_unit_id = Number(f.get("org_unit_id"));
    if (!emergency) announcement(f, b);
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
  showDuck();
})();
