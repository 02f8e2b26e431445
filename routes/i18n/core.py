"""Words of the core: generic HTTP errors, the error page frame, install and identity pages, alerts."""

MESSAGES = {
    "en": {
        "page.error_title": "Error",
        "page.status_code": "Response code: {status}",
        "error.internal_error": "Something went wrong on our side. Please try again.",
        "error.portal_required": "Name the portal: ?portal=<member_id>.",
        "error.bad_request": "The request is malformed.",
        "error.unauthorized": "Authentication is required.",
        "error.forbidden": "You are not allowed to do this.",
        "error.not_found": "Not found.",
        # Install, events and identity (models/install.py, models/identity.py)
        "error.missing_token": "The request carries no access token.",
        "error.missing_fields": (
            "Required fields are missing. Open the application from your Bitrix24 portal; "
            "API callers: send the documented fields."
        ),
        "error.oauth_unavailable": "The Bitrix24 authorisation server did not answer. Please try again.",
        "error.token_not_valid": "The access token is not valid.",
        "error.foreign_app": "The token belongs to another application.",
        "error.member_mismatch": "The token belongs to another portal.",
        "error.domain_mismatch": "The portal domain does not match.",
        "error.invalid_host": "The portal address is not allowed.",
        "error.endpoint_mismatch": "The REST endpoint is not on the portal's domain.",
        "error.portal_unavailable": "The portal did not answer. Please try again.",
        "error.portal_refused": "The portal refused the token ({upstream}).",
        "error.not_admin": "Only a portal administrator can do this.",
        "error.bad_application_token": "Unknown portal or wrong application token.",
        "error.not_installed": "The application is not installed on this portal.",
        "error.still_installed": "Bitrix24 still reports the application as installed on this portal.",
        "error.uninstall_unverifiable": "The uninstall cannot be confirmed with Bitrix24: nothing was changed.",
        "error.setup_failed": "Bitrix24 refused the set-up call ({upstream}). Open the installer again.",
        "page.install_title": "Installing the application",
        "page.install_hint": "Bitrix24 opens this page when the application is installed. Install the application "
        "from the Bitrix24 Market or the Developer resources section.",
        "page.install_done": "The application is installed",
        "page.open_title": "Open the application from Bitrix24",
        "page.open_hint": "This application works inside your Bitrix24 portal: open it from the portal's menu.",
        "page.open_failed_title": "The application could not be opened",
        # Banners (models/portal.py alerts) and the admin's Bitrix24 notification (models/alerts.py)
        "alert.needs_reauth.bitrix24": "The application has lost access to the portal. An administrator needs to "
        "open the application to restore it (or reinstall it).",
        "alert.needs_reauth.yandex": "Access to Yandex Telemost has expired or was revoked. An administrator needs "
        "to connect Yandex again under «Integrations».",
        "alert.needs_reauth.amocrm": "Access to amoCRM has expired or was revoked: connect the account again.",
        "alert.needs_reauth": "Authorisation is needed again.",
        "provider.bitrix24": "Bitrix24",
        "provider.yandex": "Yandex Telemost",
        "provider.amocrm": "amoCRM",
        "bot.work_position": "Open Lines: hands the dialog to an operator",
        "notify.needs_reauth": "The «Yandex Telemost» application has lost access to {provider} ({error}). "
        "Open the application to restore access, or reinstall it.",
    },
    "ru": {
        "page.error_title": "Ошибка",
        "page.status_code": "Код ответа: {status}",
        "error.internal_error": "Что-то пошло не так. Попробуйте ещё раз.",
        "error.portal_required": "Укажите портал: ?portal=<member_id>.",
        "error.bad_request": "Запрос составлен неверно.",
        "error.unauthorized": "Нужно войти.",
        "error.forbidden": "У вас нет прав на это действие.",
        "error.not_found": "Не найдено.",
        "error.missing_token": "В запросе нет токена доступа.",
        "error.missing_fields": (
            "В запросе не хватает данных. Откройте приложение из вашего портала Bitrix24; "
            "для API — передайте поля из документации."
        ),
        "error.oauth_unavailable": "Сервер авторизации Bitrix24 не ответил. Попробуйте ещё раз.",
        "error.token_not_valid": "Токен доступа недействителен.",
        "error.foreign_app": "Токен принадлежит другому приложению.",
        "error.member_mismatch": "Токен принадлежит другому порталу.",
        "error.domain_mismatch": "Домен портала не совпадает.",
        "error.invalid_host": "Адрес портала не разрешён.",
        "error.endpoint_mismatch": "Адрес REST не на домене портала.",
        "error.portal_unavailable": "Портал не ответил. Попробуйте ещё раз.",
        "error.portal_refused": "Портал отклонил токен ({upstream}).",
        "error.not_admin": "Это может сделать только администратор портала.",
        "error.bad_application_token": "Неизвестный портал или неверный токен приложения.",
        "error.not_installed": "Приложение не установлено на этом портале.",
        "error.still_installed": "Bitrix24 сообщает, что приложение всё ещё установлено на этом портале.",
        "error.uninstall_unverifiable": "Удаление не удалось подтвердить в Bitrix24: ничего не изменено.",
        "error.setup_failed": "Bitrix24 отклонил настройку ({upstream}). Откройте установщик ещё раз.",
        "page.install_title": "Установка приложения",
        "page.install_hint": "Эта страница открывается Bitrix24 при установке приложения. Установите приложение "
        "из Bitrix24 Маркета или раздела «Разработчикам».",
        "page.install_done": "Приложение установлено",
        "page.open_title": "Откройте приложение из Bitrix24",
        "page.open_hint": "Это приложение работает внутри вашего портала Bitrix24: откройте его из меню портала.",
        "page.open_failed_title": "Не удалось открыть приложение",
        "alert.needs_reauth.bitrix24": "Приложение потеряло доступ к порталу. Администратору нужно открыть "
        "приложение, чтобы восстановить доступ (или переустановить его).",
        "alert.needs_reauth.yandex": "Доступ к Яндекс Телемосту истёк или отозван. Администратору нужно заново "
        "подключить Яндекс в разделе «Интеграции».",
        "alert.needs_reauth.amocrm": "Доступ к amoCRM истёк или отозван: подключите аккаунт заново.",
        "alert.needs_reauth": "Нужна повторная авторизация.",
        "provider.bitrix24": "Bitrix24",
        "provider.yandex": "Яндекс Телемост",
        "provider.amocrm": "amoCRM",
        "bot.work_position": "Открытые линии: передаёт диалог оператору",
        "notify.needs_reauth": "Приложение «Яндекс Телемост» потеряло доступ к {provider} ({error}). "
        "Откройте приложение, чтобы восстановить доступ, или переустановите его.",
    },
}
