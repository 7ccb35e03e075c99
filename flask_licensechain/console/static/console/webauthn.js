// LicenseChain console: the WebAuthn ceremonies (the only script of the console).
// Buttons carry data-webauthn="register" | "mfa" | "reauth" | "passwordless"; the server
// gives options as JSON (base64url for binary fields) and verifies the browser's answer.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const base = document.body.dataset.consoleBase || "";

  function b64urlToBuffer(text) {
    const pad = "=".repeat((4 - (text.length % 4)) % 4);
    const raw = atob((text + pad).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
  }

  function bufferToB64url(buffer) {
    let text = "";
    new Uint8Array(buffer).forEach((b) => { text += String.fromCharCode(b); });
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function post(path, body) {
    const response = await fetch(base + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(data.message || "The passkey could not be used. Try again.");
    }
    return data;
  }

  function say(button, message) {
    const out = document.getElementById(button.dataset.status || "webauthn-status");
    if (out) { out.textContent = message; }
  }

  function postForm(action) {
    // A plain POST (with the CSRF token) that the browser follows: the backup codes page.
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = csrf;
    form.appendChild(token);
    document.body.appendChild(form);
    form.submit();
  }

  async function register(button) {
    const options = await post("/webauthn/register/options", {});
    options.challenge = b64urlToBuffer(options.challenge);
    options.user.id = b64urlToBuffer(options.user.id);
    (options.excludeCredentials || []).forEach((c) => { c.id = b64urlToBuffer(c.id); });
    const credential = await navigator.credentials.create({ publicKey: options });
    const nameField = document.getElementById(button.dataset.nameField || "passkey-name");
    const answer = {
      id: credential.id,
      rawId: bufferToB64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: bufferToB64url(credential.response.clientDataJSON),
        attestationObject: bufferToB64url(credential.response.attestationObject),
      },
      clientExtensionResults: credential.getClientExtensionResults(),
    };
    const transports = credential.response.getTransports ? credential.response.getTransports() : [];
    const result = await post("/webauthn/register/verify", {
      credential: answer,
      name: nameField ? nameField.value : "",
      transports: transports,
    });
    if (result.finish) { postForm(result.finish); } else { window.location.assign(result.redirect); }
  }

  async function authenticate(button, mode) {
    const options = await post("/webauthn/login/options", { mode: mode });
    options.challenge = b64urlToBuffer(options.challenge);
    (options.allowCredentials || []).forEach((c) => { c.id = b64urlToBuffer(c.id); });
    const credential = await navigator.credentials.get({ publicKey: options });
    const response = credential.response;
    const answer = {
      id: credential.id,
      rawId: bufferToB64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: bufferToB64url(response.clientDataJSON),
        authenticatorData: bufferToB64url(response.authenticatorData),
        signature: bufferToB64url(response.signature),
        userHandle: response.userHandle ? bufferToB64url(response.userHandle) : null,
      },
      clientExtensionResults: credential.getClientExtensionResults(),
    };
    const next = new URLSearchParams(window.location.search).get("next");
    const result = await post("/webauthn/login/verify", { mode: mode, credential: answer, next: next });
    window.location.assign(result.redirect);
  }

  document.querySelectorAll("[data-webauthn]").forEach((button) => {
    if (!window.PublicKeyCredential) {
      say(button, "This browser cannot use passkeys.");
      return;
    }
    const box = button.closest("[hidden]");
    if (box) { box.hidden = false; }
    button.addEventListener("click", async () => {
      const mode = button.dataset.webauthn;
      button.disabled = true;
      say(button, "Waiting for your passkey…");
      try {
        if (mode === "register") { await register(button); } else { await authenticate(button, mode); }
      } catch (error) {
        say(button, error && error.name === "NotAllowedError"
          ? "The passkey request was cancelled or timed out."
          : (error.message || "The passkey could not be used."));
        button.disabled = false;
        button.focus();
      }
    });
  });
})();
