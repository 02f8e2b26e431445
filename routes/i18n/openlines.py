"""Words of the Open Lines bot: API errors, and the bot's default replies (handed to the model at start-up)."""

MESSAGES = {
    "en": {
        "error.stale_event": "The event is too old or carries no time stamp.",
        "error.bad_application_token": "Unknown portal or wrong application token.",
        "error.not_installed": "The application is not installed on this portal.",
        "error.bad_schedule": 'Working hours must look like {{"mon": [["09:00", "18:00"]]}}.',
        "error.bad_setting": "Invalid value of {name}.",
        "error.bad_filter": "Invalid filter {name}.",
        "error.bot_not_registered": "The bot is not registered on this portal yet: reinstall or update the app.",
        "error.dialog_not_found": "No such dialog.",
        "error.line_not_found": "The portal has no Open Line {line_id}.",
        "bot.private_reply": "Hello! I hand Open Lines conversations to operators and do not answer in private "
        "chats. Please write to your colleagues directly.",
        "bot.out_of_hours": "Thank you for your message! We are not working right now; an operator will answer "
        "as soon as we are back.",
    },
    "ru": {
        "error.stale_event": "Событие слишком старое или без метки времени.",
        "error.bad_application_token": "Неизвестный портал или неверный токен приложения.",
        "error.not_installed": "Приложение не установлено на этом портале.",
        "error.bad_schedule": 'Часы работы задаются так: {{"mon": [["09:00", "18:00"]]}}.',
        "error.bad_setting": "Недопустимое значение {name}.",
        "error.bad_filter": "Недопустимый фильтр {name}.",
        "error.bot_not_registered": "Бот ещё не зарегистрирован на портале: переустановите или обновите приложение.",
        "error.dialog_not_found": "Диалог не найден.",
        "error.line_not_found": "На портале нет открытой линии {line_id}.",
        "bot.private_reply": "Здравствуйте! Я передаю обращения из Открытых линий операторам и не отвечаю в личных "
        "сообщениях. Напишите, пожалуйста, коллегам напрямую.",
        "bot.out_of_hours": "Спасибо за обращение! Сейчас мы не работаем; оператор ответит, как только рабочее "
        "время начнётся.",
    },
}
