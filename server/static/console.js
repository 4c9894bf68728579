"use strict";
// Loa console: a fetch wrapper that sends the CSRF token, and declarative buttons and forms.
(function () {
  const strings = JSON.parse(document.getElementById("loa-strings").textContent || "{}");
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";

  function t(key) {
    return strings[key] || key;
  }

  function flash(message, kind) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;
    box.className = "flash " + (kind || "info");
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }

  async function api(method, url, body) {
    const options = { method: method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body !== undefined && body !== null) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      throw new Error(t("js.network"));
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      throw new Error((data && data.detail) || response.status + " " + response.statusText);
    }
    return data;
  }

  function failed(err) {
    flash(t("js.error") + ": " + err.message, "error");
  }

  // <button data-api="POST" data-url="..." data-body='{}' data-confirm="..." data-next="/x">
  document.addEventListener("click", async function (event) {
    const button = event.target.closest("[data-api]");
    if (!button) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    let body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
    if (button.dataset.reasonFrom) {
      body = { reason: document.getElementById(button.dataset.reasonFrom).value };
    }
    button.disabled = true;
    try {
      await api(button.dataset.api, button.dataset.url, body);
      if (button.dataset.next) window.location.href = button.dataset.next;
      else window.location.reload();
    } catch (err) {
      failed(err);
      button.disabled = false;
    }
  });

  // <form data-api-form="/api/v1/..." data-then="clip">: fields sent as JSON.
  document.querySelectorAll("form[data-api-form]").forEach(function (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const data = {};
      new FormData(form).forEach(function (value, key) {
        if (value !== "") data[key] = value;
      });
      const submit = form.querySelector("[type=submit]");
      if (submit) submit.disabled = true;
      flash(t("js.sending"), "info");
      try {
        const result = await api("POST", form.dataset.apiForm, data);
        if (form.dataset.then === "clip" && result && result.id) {
          window.location.href = "/clips/" + result.id;
        } else {
          window.location.reload();
        }
      } catch (err) {
        failed(err);
      } finally {
        if (submit) submit.disabled = false;
      }
    });
  });

  window.Loa = { t: t, api: api, flash: flash, failed: failed, csrf: csrf };
})();
