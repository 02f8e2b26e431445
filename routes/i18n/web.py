"""Words of the web layer: throttled token attempts, rate limits, body limit, auth sent in a URL."""

MESSAGES = {
    "en": {
        "error.too_many_attempts": "Too many failed attempts from your address. Try again in {retry_after} s.",
        "error.auth_in_query": "Open the application from your Bitrix24 portal: sign-in data must not be "
        "sent in the page address.",
        "error.rate_limited": "Too many requests from your address. Try again in {retry_after} s.",
        "error.payload_too_large": "The request body is too large (at most {limit_mb} MB).",
    },
    "ru": {
        "error.too_many_attempts": "Слишком много неудачных попыток с вашего адреса. Повторите через {retry_after} с.",
        "error.auth_in_query": "Откройте приложение из вашего портала Bitrix24: данные входа нельзя "
        "передавать в адресе страницы.",
        "error.rate_limited": "Слишком много запросов с вашего адреса. Повторите через {retry_after} с.",
        "error.payload_too_large": "Тело запроса слишком велико (не более {limit_mb} МБ).",
    },
}
