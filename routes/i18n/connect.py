"""Words of the connect windows (Yandex, amoCRM), outside accounts and the portal's own API token."""

MESSAGES = {
    "en": {
        "connect.title.yandex_portal": "Connect a Yandex account to the portal",
        "connect.title.yandex_personal": "Connect your own Yandex account",
        "connect.title.amocrm_global": "Connect an amoCRM account",
        "connect.lead.yandex_portal": "The Yandex account you choose on the next page will belong to the Bitrix24 "
                                      "portal below: the app will organise this portal's conferences with it.",
        "connect.lead.yandex_personal": "The Yandex account you choose on the next page will be the personal account "
                                        "of the Bitrix24 user below: the app will organise their conferences with it.",
        "connect.lead.amocrm_global": "The amoCRM account you choose on the next page will be connected to this "
                                      "application; its token keeper will keep it authorised.",
        "connect.portal_label": "Bitrix24 portal",
        "connect.user_label": "Bitrix24 user",
        "connect.scope_label": "Connection",
        "connect.scope.portal": "for the whole portal",
        "connect.scope.personal": "personal, for this user only",
        "connect.scope.global": "for the application",
        "connect.warning": "Continue only if you started this yourself in the app and the portal and user above are "
                           "yours. If someone sent you this link, close the window.",
        "connect.button": "Connect",
        "connect.cancel_hint": "To cancel, close this window.",
        "connect.refused.title": "This link cannot be used",
        "connect.denied.title.yandex": "Yandex did not grant access",
        "connect.denied.title.amocrm": "amoCRM did not grant access",
        "connect.denied.message": "Access was not granted. Start the connection again from the app if you want to.",
        "connect.failed.title.yandex": "Could not connect Yandex",
        "connect.failed.title.amocrm": "Could not connect amoCRM",
        "connect.done.title.yandex": "Yandex connected",
        "connect.done.title.amocrm": "amoCRM connected",
        "connect.done.message.portal": "The account {account} is connected to the portal. This window will close "
                                       "by itself.",
        "connect.done.message.personal": "Your account {account} is connected. This window will close by itself.",
        "connect.done.message.amocrm": "The account {account} is connected. You can close this window.",
        "error.link_used": "This connection link has already been used. Start the connection again from the app.",
        "error.link_expired": "This connection link has expired. Start the connection again from the app.",
        "error.link_unknown": "This connection link is not valid. Start the connection again from the app.",
        "error.other_browser": "The connection was started in another browser or window. Start it again from the "
                               "app in this browser.",
        "error.portal_not_installed": "The application is not installed on this portal.",
        "error.bad_scope": "The connection scope must be 'portal' or 'personal'.",
        "error.bad_code": "Yandex did not send an authorization code.",
        "error.yandex_refused": "Yandex refused access ({reason}).",
        "error.account_in_use": "This Yandex account is already connected to another portal.",
        "error.account_in_use_personal": "This Yandex account is already connected as another user's personal "
                                         "account.",
        "error.bad_subdomain": "subdomain must be the account's name, e.g. 'mycompany'.",
        "error.amocrm_refused": "amoCRM refused the code ({reason}).",
        "error.bad_tokens": "The tokens are too long, or expires_in is not a positive number of seconds (≤ 5 years).",
        "error.unknown_provider": "provider must be one of bitrix24, yandex, amocrm.",
        "error.needs_reauth": "The credential needs re-authorisation.",
        "error.unavailable": "The token could not be refreshed right now; try again.",
        "error.portal_not_found": "No such portal.",
    },
    "ru": {
        "connect.title.yandex_portal": "Подключение аккаунта Яндекса к порталу",
        "connect.title.yandex_personal": "Подключение вашего аккаунта Яндекса",
        "connect.title.amocrm_global": "Подключение аккаунта amoCRM",
        "connect.lead.yandex_portal": "Аккаунт Яндекса, который вы выберете на следующей странице, будет "
                                      "принадлежать порталу Bitrix24, указанному ниже: приложение будет создавать им "
                                      "конференции этого портала.",
        "connect.lead.yandex_personal": "Аккаунт Яндекса, который вы выберете на следующей странице, станет личным "
                                        "аккаунтом пользователя Bitrix24, указанного ниже: приложение будет создавать "
                                        "им его конференции.",
        "connect.lead.amocrm_global": "Аккаунт amoCRM, который вы выберете на следующей странице, будет подключён к "
                                      "приложению, и приложение будет поддерживать его авторизацию.",
        "connect.portal_label": "Портал Bitrix24",
        "connect.user_label": "Пользователь Bitrix24",
        "connect.scope_label": "Подключение",
        "connect.scope.portal": "для всего портала",
        "connect.scope.personal": "личное, только для этого пользователя",
        "connect.scope.global": "для приложения",
        "connect.warning": "Продолжайте, только если вы сами начали подключение в приложении и портал и пользователь "
                           "выше — ваши. Если эту ссылку вам прислали, закройте окно.",
        "connect.button": "Подключить",
        "connect.cancel_hint": "Чтобы отказаться, закройте это окно.",
        "connect.refused.title": "Ссылку нельзя использовать",
        "connect.denied.title.yandex": "Яндекс не дал доступ",
        "connect.denied.title.amocrm": "amoCRM не дал доступ",
        "connect.denied.message": "Доступ не выдан. Если нужно, начните подключение заново из приложения.",
        "connect.failed.title.yandex": "Не удалось подключить Яндекс",
        "connect.failed.title.amocrm": "Не удалось подключить amoCRM",
        "connect.done.title.yandex": "Яндекс подключён",
        "connect.done.title.amocrm": "amoCRM подключён",
        "connect.done.message.portal": "Аккаунт {account} подключён к порталу. Окно закроется само.",
        "connect.done.message.personal": "Ваш аккаунт {account} подключён. Окно закроется само.",
        "connect.done.message.amocrm": "Аккаунт {account} подключён. Окно можно закрыть.",
        "error.link_used": "Эта ссылка подключения уже использована. Начните подключение заново из приложения.",
        "error.link_expired": "Срок действия ссылки подключения истёк. Начните подключение заново из приложения.",
        "error.link_unknown": "Ссылка подключения недействительна. Начните подключение заново из приложения.",
        "error.other_browser": "Подключение начато в другом браузере или окне. Начните его заново из приложения в "
                               "этом браузере.",
        "error.portal_not_installed": "Приложение не установлено на этом портале.",
        "error.bad_scope": "Тип подключения должен быть «portal» или «personal».",
        "error.bad_code": "Яндекс не передал код авторизации.",
        "error.yandex_refused": "Яндекс отказал в доступе ({reason}).",
        "error.account_in_use": "Этот аккаунт Яндекса уже подключён к другому порталу.",
        "error.account_in_use_personal": "Этот аккаунт Яндекса уже подключён как личный аккаунт другого "
                                         "пользователя.",
        "error.bad_subdomain": "subdomain — это имя аккаунта, например «mycompany».",
        "error.amocrm_refused": "amoCRM не принял код ({reason}).",
        "error.bad_tokens": "Токены слишком длинные, или expires_in — не положительное число секунд (не больше 5 лет).",
        "error.unknown_provider": "provider должен быть одним из: bitrix24, yandex, amocrm.",
        "error.needs_reauth": "Нужна повторная авторизация.",
        "error.unavailable": "Сейчас не удалось обновить токен; попробуйте ещё раз.",
        "error.portal_not_found": "Такого портала нет.",
    },
}
