// byoc settings page: submits the page's forms to the JSON API with the session cookie and the CSRF header,
// shows errors beside the fields, then re-renders the page from the server.
"use strict";

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  if (!csrfMeta) {
    return;
  }
  const csrf = csrfMeta.content;
  const FLASH_KEY = "byoc-settings-flash";

  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": csrf, Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      return { ok: false, status: 0, data: null, message: "The server could not be reached. Try again." };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    const message = data && data.error && data.error.message ? data.error.message : "Request failed (HTTP " + response.status + ").";
    return { ok: response.ok, status: response.status, data, message };
  }

  function reloadWith(kind, text) {
    sessionStorage.setItem(FLASH_KEY, JSON.stringify({ kind, text }));
    window.location.replace(window.location.pathname);
  }

  function showFlash(kind, text) {
    const flash = document.getElementById("flash");
    const note = document.createElement("p");
    note.className = "notice " + kind;
    note.textContent = text;
    flash.replaceChildren(note);
  }

  const saved = sessionStorage.getItem(FLASH_KEY);
  if (saved) {
    sessionStorage.removeItem(FLASH_KEY);
    try {
      const flash = JSON.parse(saved);
      showFlash(flash.kind, flash.text);
    } catch (error) {
      sessionStorage.removeItem(FLASH_KEY);
    }
  }

  function setFieldError(form, name, text) {
    const input = form.elements.namedItem(name);
    const slot = document.getElementById((input ? input.id : name) + "-error");
    if (input) {
      input.setAttribute("aria-invalid", text ? "true" : "false");
    }
    if (slot) {
      slot.textContent = text ? "❌ " + text : "";
    }
  }

  function clearErrors(form, formError) {
    for (const input of form.querySelectorAll("input[name]")) {
      setFieldError(form, input.name, "");
    }
    if (formError) {
      formError.textContent = "";
    }
  }

  // Browser-side validation with the same rules as the server (pattern/required attributes), shown beside the
  // field. Returns false and focuses the first invalid field when one fails.
  function validate(form) {
    let first = null;
    for (const input of form.querySelectorAll("input[name]")) {
      if (input.type === "hidden") {
        continue;
      }
      if (!input.checkValidity()) {
        setFieldError(form, input.name, input.dataset.error || input.validationMessage);
        first = first || input;
      }
    }
    if (first) {
      first.focus();
      return false;
    }
    return true;
  }

  // A 422 names the field first ("phoneNumber: …"); show it beside that field, else under the form.
  function showServerError(form, formError, result) {
    const match = /^([A-Za-z]+): (.*)$/.exec(result.message);
    if (result.status === 422 && match && form.elements.namedItem(match[1])) {
      setFieldError(form, match[1], match[2]);
      form.elements.namedItem(match[1]).focus();
    } else if (result.status === 409 && form.elements.namedItem("displayName")) {
      setFieldError(form, "displayName", result.message);
      form.elements.namedItem("displayName").focus();
    } else if (result.status === 401) {
      formError.textContent = "❌ Your session has ended. Reload the page to sign in again.";
    } else {
      formError.textContent = "❌ " + result.message;
    }
  }

  function busy(form, on) {
    for (const button of form.querySelectorAll("button")) {
      button.disabled = on;
    }
  }

  // The add-credential forms (Twilio, Stripe, HubSpot): each names its endpoint; text fields are sent trimmed,
  // secrets as typed, and secrets are cleared from the form whatever the answer.
  for (const form of document.querySelectorAll("form[data-endpoint]")) {
    const formError = document.getElementById(form.id + "-error");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form, formError);
      if (!validate(form)) {
        return;
      }
      const body = {};
      for (const input of form.querySelectorAll("input[name]")) {
        body[input.name] = input.type === "password" ? input.value : input.value.trim();
      }
      busy(form, true);
      const result = await api("POST", form.dataset.endpoint, body);
      for (const input of form.querySelectorAll('input[type="password"]')) {
        input.value = "";
      }
      busy(form, false);
      if (result.ok) {
        reloadWith("ok", "✅ " + form.dataset.added + " “" + body.displayName + "” added. Verify it next.");
      } else {
        showServerError(form, formError, result);
      }
    });
  }

  const testSms = document.getElementById("test-sms");
  if (testSms) {
    const resultSlot = document.getElementById("test-sms-result");
    testSms.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(testSms, resultSlot);
      if (!validate(testSms)) {
        return;
      }
      busy(testSms, true);
      const result = await api("POST", "/api/sms/test", { to: testSms.elements.namedItem("to").value.trim() });
      busy(testSms, false);
      if (result.ok && result.data) {
        resultSlot.className = "notice ok";
        resultSlot.textContent = "✅ Sent: message " + result.data.sid + " is " + result.data.status + ".";
      } else if (result.status === 404) {
        resultSlot.className = "notice error";
        resultSlot.textContent = "❌ This server does not offer test SMS yet.";
      } else {
        resultSlot.className = "notice error";
        showServerError(testSms, resultSlot, result);
      }
    });
  }

  const table = document.getElementById("credentials");
  if (table) {
    const tableError = document.getElementById("credentials-error");
    table.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) {
        return;
      }
      const { action, id, name } = button.dataset;
      const url = "/api/organization/credentials/" + encodeURIComponent(id);
      tableError.textContent = "";
      if (action === "verify") {
        button.disabled = true;
        const result = await api("POST", url + "/verify");
        button.disabled = false;
        if (!result.ok) {
          tableError.textContent = "❌ " + result.message;
        } else if (result.data.verified) {
          reloadWith("ok", "✅ “" + name + "” verified.");
        } else {
          reloadWith("error", "❌ “" + name + "” failed verification: " + (result.data.verification_error || "the provider refused it") + ".");
        }
      } else if (action === "revoke" || action === "purge") {
        const question = action === "revoke"
          ? "Revoke “" + name + "”? Its secret can no longer be used; the entry stays in the list and the audit log."
          : "Purge “" + name + "” for good? The entry and its encrypted secret are deleted; audit entries stay.";
        if (!window.confirm(question)) {
          return;
        }
        button.disabled = true;
        const result = await api("DELETE", action === "purge" ? url + "?purge=true" : url);
        button.disabled = false;
        if (result.ok) {
          reloadWith("ok", action === "revoke" ? "✅ “" + name + "” revoked." : "✅ “" + name + "” purged.");
        } else {
          tableError.textContent = "❌ " + result.message;
        }
      }
    });
  }

  // The activity card's line: whether the organization's audit chain verifies (checked after the page shows, as
  // the check reads every event).
  const chainStatus = document.getElementById("chain-status");
  if (chainStatus) {
    api("GET", "/api/organization/audit/verify").then((result) => {
      if (!result.ok) {
        chainStatus.textContent = "The activity record could not be checked: " + result.message;
        chainStatus.className = "notice error";
        return;
      }
      const report = result.data;
      if (report.intact) {
        chainStatus.textContent = "✅ The activity record verifies: " + report.events
          + " event(s), none changed or removed since they were written.";
        chainStatus.className = "notice ok";
      } else {
        chainStatus.textContent = "❌ The activity record does not verify: at event " + report.firstBrokenSeq
          + ", " + report.problem + ".";
        chainStatus.className = "notice error";
      }
    });
  }
})();
