"""Words of the web layer: throttled token attempts, auth sent in a URL, access to /metrics."""

MESSAGES = {
    "en": {
        "error.too_many_attempts": "Too many failed attempts from your address. Try again in {retry_after} s.",
        "error.auth_in_query": "Open the application from your Bitrix24 portal: sign-in data must not be "
        "sent in the page address.",
    },
    "ru": {
        "error.too_many_attempts": "Слишком много неудачных попыток с вашего адреса. Повторите через {retry_after} с.",
        "error.auth_in_query": "Откройте приложение из вашего портала Bitrix24: данные входа нельзя "
        "передавать в адресе страницы.",
    },
}
