"""Words of the core: generic HTTP errors, the error page frame, install and identity pages."""

MESSAGES = {
    "en": {
        "page.error_title": "Error",
        "page.status_code": "Response code: {status}",
        "error.internal_error": "Something went wrong on our side. Please try again.",
        "error.bad_request": "The request is malformed.",
        "error.unauthorized": "Authentication is required.",
        "error.forbidden": "You are not allowed to do this.",
        "error.not_found": "Not found.",
    },
    "ru": {
        "page.error_title": "Ошибка",
        "page.status_code": "Код ответа: {status}",
        "error.internal_error": "Что-то пошло не так. Попробуйте ещё раз.",
        "error.bad_request": "Запрос составлен неверно.",
        "error.unauthorized": "Нужно войти.",
        "error.forbidden": "У вас нет прав на это действие.",
        "error.not_found": "Не найдено.",
    },
}
