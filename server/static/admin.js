"use strict";
// Users page: add a user, change one, reset a password (JSON to /api/v1/users, CSRF header).
(function () {
  const Loa = window.Loa;
  const NOTE = "loa-users-note"; // a message shown after the page reloads

  function say(key, name) {
    return Loa.t(key).replace("{name}", name);
  }

  const note = window.sessionStorage.getItem(NOTE);
  if (note) {
    window.sessionStorage.removeItem(NOTE);
    Loa.flash(note, "info");
  }

  // The emergency right only means something for some roles (administrators always have it).
  function syncEmergency(form) {
    const box = form.querySelector("[name=can_emergency]");
    const role = form.querySelector("[name=role]");
    if (!box || !role) return;
    const roles = (form.dataset.emergencyRoles || "").split(" ");
    box.disabled = roles.indexOf(role.value) === -1;
    if (box.disabled) box.checked = false;
  }

  function fields(form) {
    const body = {};
    form.querySelectorAll("input[name], select[name]").forEach(function (el) {
      if (el.type === "checkbox") body[el.name] = el.checked;
      else if (el.name === "org_unit_id") body[el.name] = el.value === "" ? null : Number(el.value);
      else if (el.type === "password" || el.name === "username") body[el.name] = el.value;
      else body[el.name] = el.value.trim();
    });
    return body;
  }

  async function send(form, method, url, body, done) {
    const submit = form.querySelector("[type=submit]");
    if (submit) submit.disabled = true;
    Loa.flash(Loa.t("js.sending"), "info");
    try {
      const result = await Loa.api(method, url, body);
      done(result);
    } catch (err) {
      Loa.failed(err);
    } finally {
      if (submit) submit.disabled = false;
    }
  }

  function rowName(form) {
    const row = form.closest("tr");
    return row ? row.dataset.username : "";
  }

  document.querySelectorAll(".user-form").forEach(function (form) {
    const role = form.querySelector("[name=role]");
    if (role) role.addEventListener("change", function () { syncEmergency(form); });
    syncEmergency(form);
  });

  const create = document.getElementById("new-user-form");
  if (create) {
    create.addEventListener("submit", function (event) {
      event.preventDefault();
      const body = fields(create);
      send(create, "POST", "/api/v1/users", body, function (user) {
        window.sessionStorage.setItem(NOTE, say("users.js.created", user.username));
        window.location.reload();
      });
    });
  }

  document.querySelectorAll(".edit-user-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const body = fields(form);
      if (body.org_unit_id === null) delete body.org_unit_id; // "whole system" stays as it is
      send(form, "PATCH", form.dataset.url, body, function (user) {
        window.sessionStorage.setItem(NOTE, say("users.js.saved", user.username));
        window.location.reload();
      });
    });
  });

  document.querySelectorAll(".password-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const input = form.querySelector("[name=password]");
      send(form, "POST", form.dataset.url, { password: input.value }, function () {
        input.value = "";
        Loa.flash(say("users.js.password_reset", rowName(form)), "info");
      });
    });
  });
})();
