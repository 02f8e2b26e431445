"""Words of the conferences area: API errors, notifications to invitees, the calendar event's link line.

Notification templates get `name`, `link` (the join link, or the watch link for a broadcast's viewers),
`when` and `owner`; `.out` variants are the e-mail texts (no BB-codes).
"""

MESSAGES = {
    "en": {
        "error.validation_error": "Some fields are not filled in correctly.",
        "error.conference_not_found": "Conference not found.",
        "error.conference_cancelled": "This conference has been cancelled.",
        "error.conference_in_progress": "This conference is still being created. Try again in a moment.",
        "error.idempotency_key_reused": "This Idempotency-Key was already used for a different request.",
        "error.bad_idempotency_key": "Idempotency-Key must be 1 to 128 visible ASCII characters.",
        "error.yandex_not_connected": "No Yandex account is connected: an administrator has to connect one "
        "(or connect your own).",
        "error.yandex_reconnect_required": "Yandex no longer accepts the connected account: connect it again.",
        "error.telemost_restricted_to_organizations": "This Yandex account cannot create meetings through the API: "
        "it is a personal Yandex ID, not Yandex 360 for Business.",
        "error.telemost_live_stream_payment_required": "Broadcasts need a paid Yandex 360 plan.",
        "error.telemost_unknown_users": "These addresses are not Yandex accounts: {emails}",
        "error.telemost_not_found": "Telemost does not know this meeting any more.",
        "error.telemost_rate_limited": "Telemost is busy. Try again in a minute.",
        "error.telemost_unavailable": "Telemost is not answering. Try again later.",
        "error.telemost_bad_request": "Telemost refused the request.",
        "error.bitrix_not_connected": "The application has no access to your Bitrix24 portal: open it again.",
        "error.bitrix_unavailable": "Bitrix24 is not answering. Try again later.",
        "error.bitrix_user_token_missing": "Open the application again so that the calendar event is yours.",
        "error.bitrix_refused": "Bitrix24 refused the request ({bitrix_code}).",
        "calendar.link": "Yandex Telemost: {link}",
        "notify.invited": "{owner} invites you to «{name}» {when}: [URL={link}]join[/URL]",
        "notify.invited.out": "{owner} invites you to «{name}» {when}: {link}",
        "notify.invited_viewer": "{owner} invites you to watch the broadcast «{name}» {when}: [URL={link}]watch[/URL]",
        "notify.invited_viewer.out": "{owner} invites you to watch the broadcast «{name}» {when}: {link}",
        "notify.rescheduled": "«{name}» has a new time: {when}. [URL={link}]Link[/URL]",
        "notify.rescheduled.out": "«{name}» has a new time: {when}. {link}",
        "notify.cancelled": "«{name}» {when} is cancelled.",
        "notify.cancelled.out": "«{name}» {when} is cancelled.",
    },
    "ru": {
        "error.validation_error": "Некоторые поля заполнены неверно.",
        "error.conference_not_found": "Конференция не найдена.",
        "error.conference_cancelled": "Эта конференция отменена.",
        "error.conference_in_progress": "Конференция ещё создаётся. Попробуйте через минуту.",
        "error.idempotency_key_reused": "Этот Idempotency-Key уже использован для другого запроса.",
        "error.bad_idempotency_key": "Idempotency-Key — от 1 до 128 видимых символов ASCII.",
        "error.yandex_not_connected": "Аккаунт Яндекса не подключён: его должен подключить администратор "
        "(или подключите свой).",
        "error.yandex_reconnect_required": "Яндекс больше не принимает подключённый аккаунт: подключите его заново.",
        "error.telemost_restricted_to_organizations": "Этот аккаунт Яндекса не может создавать встречи через API: "
        "это личный Яндекс ID, а не Яндекс 360 для бизнеса.",
        "error.telemost_live_stream_payment_required": "Для трансляций нужен платный тариф Яндекс 360.",
        "error.telemost_unknown_users": "Эти адреса не являются аккаунтами Яндекса: {emails}",
        "error.telemost_not_found": "Телемост больше не знает эту встречу.",
        "error.telemost_rate_limited": "Телемост перегружен. Попробуйте через минуту.",
        "error.telemost_unavailable": "Телемост не отвечает. Попробуйте позже.",
        "error.telemost_bad_request": "Телемост отклонил запрос.",
        "error.bitrix_not_connected": "У приложения нет доступа к порталу Bitrix24: откройте его заново.",
        "error.bitrix_unavailable": "Bitrix24 не отвечает. Попробуйте позже.",
        "error.bitrix_user_token_missing": "Откройте приложение заново, чтобы событие в календаре было вашим.",
        "error.bitrix_refused": "Bitrix24 отклонил запрос ({bitrix_code}).",
        "calendar.link": "Яндекс Телемост: {link}",
        "notify.invited": "{owner} приглашает вас на «{name}» {when}: [URL={link}]подключиться[/URL]",
        "notify.invited.out": "{owner} приглашает вас на «{name}» {when}: {link}",
        "notify.invited_viewer": "{owner} приглашает вас посмотреть трансляцию «{name}» {when}: "
        "[URL={link}]смотреть[/URL]",
        "notify.invited_viewer.out": "{owner} приглашает вас посмотреть трансляцию «{name}» {when}: {link}",
        "notify.rescheduled": "У «{name}» новое время: {when}. [URL={link}]Ссылка[/URL]",
        "notify.rescheduled.out": "У «{name}» новое время: {when}. {link}",
        "notify.cancelled": "«{name}» {when} отменена.",
        "notify.cancelled.out": "«{name}» {when} отменена.",
    },
}
