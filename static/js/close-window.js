// Closes a popup window opened by the app (e.g. the Yandex connection) after its result page has shown.
// Include as <script src="{{ url_for('static', filename='js/close-window.js') }}" defer></script>.
if (window.opener) setTimeout(() => window.close(), 1500)
