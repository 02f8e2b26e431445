/*
 * Parent (portal) side of the Bitrix24 frame protocol, as spoken by @bitrix24/b24jssdk 2.x.
 *
 * Wire format (node_modules/@bitrix24/b24jssdk/dist/esm/frame/message/controller.mjs):
 *   app -> portal: the string "command[:params]:callbackId:appSid", posted to the portal origin
 *                  (params is JSON and may itself contain ":"; it is left out when empty), or, for a
 *                  command that contains ":", the object {method, params, callback, appSid, requestId};
 *   portal -> app: the string "callbackId:json" (nothing after the colon = empty result), posted to the
 *                  app origin; the SDK drops it unless event.origin is "http(s)://{DOMAIN}" from window.name.
 *
 * Page contract: window.SANDBOX_FRAME = {appOrigin, frameName, iframeId, initData, refreshAuthUrl,
 * installFinishUrl, eventUrl, users: [{id, name, position}], user: {id, name}}.
 * Plain ES2017, no build step.
 */
(function () {
  'use strict';

  var cfg = window.SANDBOX_FRAME;
  if (!cfg) {
    console.error('b24parent.js: window.SANDBOX_FRAME is not set');
    return;
  }
  var iframe = document.getElementById(cfg.iframeId || 'app-frame');
  var appSid = String(cfg.frameName || iframe.name).split('|')[2] || '';
  var MIN_HEIGHT = 200;
  var SECRET_KEY = /auth|token|refresh|secret|password/i;
  var ANSWERED = {}; // a handler's result meaning "already replied"
  var LOG_KEY = 'b24parent.commands';

  function toBool(value) {
    return value === true || value === 1 || value === '1' || value === 'Y' || value === 'true';
  }

  function seconds(value, fallback) {
    var number = parseInt(value, 10);
    return isNaN(number) ? fallback : number;
  }

  function parseJsonObject(value) {
    if (value && typeof value === 'object') return value;
    try {
      return JSON.parse(value || '{}') || {};
    } catch (e) {
      return {};
    }
  }

  // Field types as the SDK reads them (frame/b24.mjs, frame/auth.mjs, frame/frame.mjs, frame/options.mjs,
  // frame/placement.mjs): INSTALL/FIRST_RUN/IS_ADMIN booleans, AUTH_EXPIRES seconds, options as objects.
  var initData = Object.assign({}, cfg.initData);
  initData.PROTOCOL = Number(initData.PROTOCOL) === 1 ? 1 : 0;
  initData.AUTH_EXPIRES = seconds(initData.AUTH_EXPIRES, 3600);
  initData.IS_ADMIN = toBool(initData.IS_ADMIN);
  initData.INSTALL = toBool(initData.INSTALL);
  initData.FIRST_RUN = toBool(initData.FIRST_RUN);
  initData.PLACEMENT = initData.PLACEMENT || 'DEFAULT';
  initData.PLACEMENT_OPTIONS = parseJsonObject(initData.PLACEMENT_OPTIONS);
  initData.APP_OPTIONS = parseJsonObject(initData.APP_OPTIONS);
  initData.USER_OPTIONS = parseJsonObject(initData.USER_OPTIONS);

  function redact(value) {
    if (Array.isArray(value)) return value.map(redact);
    if (!value || typeof value !== 'object') return value;
    var out = {};
    Object.keys(value).forEach(function (key) {
      out[key] = SECRET_KEY.test(key) ? '***' : redact(value[key]);
    });
    return out;
  }

  function postJson(url, body) {
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
      credentials: 'same-origin',
      keepalive: true,
    }).then(function (response) {
      if (!response.ok) throw new Error(url + ' answered HTTP ' + response.status);
      return response.json();
    });
  }

  /** Appends a command name to sessionStorage, which survives the reload after installFinish (for tests). */
  function remember(command) {
    try {
      var log = JSON.parse(sessionStorage.getItem(LOG_KEY) || '[]');
      log.push(command);
      sessionStorage.setItem(LOG_KEY, JSON.stringify(log.slice(-200)));
    } catch (e) {
      // storage disabled: the eventUrl record is the authoritative one
    }
  }

  /** Records a frame command for tests (never with tokens); failures only go to the console. */
  function record(command, params) {
    remember(command);
    if (!cfg.eventUrl) return Promise.resolve();
    return postJson(cfg.eventUrl, { command: command, params: redact(params) }).catch(function (error) {
      console.warn('b24parent.js: could not record', command, error);
    });
  }

  function reply(callbackId, result) {
    if (!callbackId || !iframe.contentWindow) return;
    var payload = result === undefined ? '' : JSON.stringify(result);
    iframe.contentWindow.postMessage(callbackId + ':' + payload, cfg.appOrigin);
  }

  /** "cmd[:params]:callbackId:appSid" or {method, params, callback, appSid} -> {command, params, callbackId, appSid}. */
  function parseMessage(data) {
    if (data && typeof data === 'object' && typeof data.method === 'string') {
      return { command: data.method, params: data.params || null, callbackId: data.callback, appSid: data.appSid };
    }
    if (typeof data !== 'string') return null;
    var parts = data.split(':');
    if (parts.length < 3) return null;
    var command = parts.shift();
    var sid = parts.pop();
    var callbackId = parts.pop();
    var raw = parts.join(':');
    var params = null;
    if (raw) {
      try {
        params = JSON.parse(raw);
      } catch (e) {
        params = raw; // placement.setValue sends a raw (already serialised) value
      }
    }
    return { command: command, params: params, callbackId: callbackId, appSid: sid };
  }

  function reloadPortalPage() {
    // Bitrix24 re-posts the app form into the frame; reloading the portal page does exactly that here.
    window.location.reload();
  }

  function userResult(user) {
    return {
      id: String(user.id),
      name: user.name,
      photo: user.photo || '',
      position: user.position || '',
      url: '/company/personal/user/' + user.id + '/',
      sub: false,
      sup: false,
    };
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === 'style') node.style.cssText = attrs[key];
      else if (key === 'text') node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(child);
    });
    return node;
  }

  /** A minimal stand-in for the portal's employee picker; resolves with a user, a list, or null/[] on cancel. */
  function pickUsers(multiple) {
    return new Promise(function (resolve) {
      var users = cfg.users || [];
      var overlay = el('div', {
        'data-testid': 'sandbox-user-picker',
        style: 'position:fixed;inset:0;background:rgba(0,0,0,.35);display:flex;align-items:center;' +
          'justify-content:center;z-index:1000;font:14px Arial,sans-serif',
      });
      var list = el('div', { style: 'max-height:320px;overflow:auto;margin:12px 0' });
      var panel = el('div', { style: 'background:#fff;border-radius:10px;padding:20px;width:360px' }, [
        el('div', { style: 'font-weight:bold;font-size:16px', text: multiple ? 'Выбор сотрудников' : 'Выбор сотрудника' }),
        list,
      ]);
      function close(result) {
        document.body.removeChild(overlay);
        resolve(result);
      }
      users.forEach(function (user) {
        var row = el('label', {
          'data-user-id': String(user.id),
          style: 'display:flex;gap:8px;align-items:center;padding:8px;border-radius:6px;cursor:pointer',
        });
        if (multiple) row.appendChild(el('input', { type: 'checkbox', value: String(user.id) }));
        row.appendChild(el('span', { text: user.name + (user.position ? ' — ' + user.position : '') }));
        if (!multiple) {
          row.addEventListener('click', function () {
            close(userResult(user));
          });
        }
        list.appendChild(row);
      });
      var buttons = el('div', { style: 'display:flex;gap:8px;justify-content:flex-end' });
      if (multiple) {
        var choose = el('button', { type: 'button', 'data-testid': 'sandbox-user-picker-ok', text: 'Выбрать' });
        choose.addEventListener('click', function () {
          var ids = Array.prototype.map.call(list.querySelectorAll('input:checked'), function (box) {
            return box.value;
          });
          close(users.filter(function (user) {
            return ids.indexOf(String(user.id)) !== -1;
          }).map(userResult));
        });
        buttons.appendChild(choose);
      }
      var cancel = el('button', { type: 'button', 'data-testid': 'sandbox-user-picker-cancel', text: 'Отмена' });
      cancel.addEventListener('click', function () {
        close(multiple ? [] : null);
      });
      buttons.appendChild(cancel);
      panel.appendChild(buttons);
      overlay.appendChild(panel);
      document.body.appendChild(overlay);
    });
  }

  // Each handler returns the result to send back (undefined = empty result) or a Promise of it.
  var handlers = {
    getInitData: function () {
      return initData;
    },
    setInstall: function () {
      return undefined; // sent by the SDK on FIRST_RUN; Bitrix24 just acknowledges it
    },
    setInstallFinish: function (params, message) {
      return postJson(cfg.installFinishUrl, {})
        .then(function () {
          reply(message.callbackId, {});
          return message.recorded;
        })
        .then(function () {
          reloadPortalPage();
          return ANSWERED;
        });
    },
    refreshAuth: function () {
      var body = { AUTH_ID: initData.AUTH_ID, REFRESH_ID: initData.REFRESH_ID };
      return postJson(cfg.refreshAuthUrl, body).then(function (auth) {
        initData.AUTH_ID = auth.AUTH_ID;
        initData.REFRESH_ID = auth.REFRESH_ID;
        initData.AUTH_EXPIRES = seconds(auth.AUTH_EXPIRES, initData.AUTH_EXPIRES);
        return auth;
      });
    },
    resizeWindow: function (params) {
      var height = parseInt(params && params.height, 10);
      if (height > 0) iframe.style.height = Math.max(MIN_HEIGHT, height) + 'px';
      // The app area is always full width here; only a percentage width is honoured.
      if (params && typeof params.width === 'string' && /%$/.test(params.width)) iframe.style.width = params.width;
      return undefined;
    },
    setTitle: function (params) {
      var title = String((params && params.title) || '');
      document.title = title;
      var node = document.getElementById('app-title');
      if (node) node.textContent = title;
      return undefined;
    },
    setScroll: function (params) {
      window.scrollTo(0, Number(params && params.scroll) || 0);
      return undefined;
    },
    selectUser: function (params) {
      return pickUsers(Boolean(params && params.mult));
    },
    reloadWindow: function (params, message) {
      reply(message.callbackId, undefined);
      message.recorded.then(reloadPortalPage);
      return ANSWERED;
    },
    setAppOption: function (params) {
      if (params && params.name) initData.APP_OPTIONS[params.name] = params.value;
      return undefined;
    },
    setUserOption: function (params) {
      if (params && params.name) initData.USER_OPTIONS[params.name] = params.value;
      return undefined;
    },
  };

  function onMessage(event) {
    // Same checks Bitrix24 makes: only our frame, from the app's origin, for the current frame session.
    if (event.source !== iframe.contentWindow || event.origin !== cfg.appOrigin) return;
    var message = parseMessage(event.data);
    if (!message || message.appSid !== appSid) return;
    var handler = handlers[message.command];
    message.recorded = record(message.command, message.params);
    var result;
    try {
      result = handler ? handler(message.params, message) : undefined;
    } catch (error) {
      console.error('b24parent.js: ' + message.command + ' failed', error);
      return;
    }
    Promise.resolve(result).then(
      function (value) {
        if (value !== ANSWERED) reply(message.callbackId, value);
      },
      function (error) {
        // Bitrix24 does not answer a command it could not carry out; the SDK's own timeout applies.
        console.error('b24parent.js: ' + message.command + ' failed', error);
        message.recorded.then(function () {
          record(message.command + ':failed', { error: String(error && error.message) });
        });
      }
    );
  }

  // Listen before the page posts its form into the frame, so the app's first getInitData is heard.
  window.addEventListener('message', onMessage);
})();
