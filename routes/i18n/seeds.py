"""Words of the recovery notice (issue 10 item 9): the portal admin is told a credential works again."""

MESSAGES = {
    "en": {
        "notify.restored": "The «Yandex Telemost» application has access to {provider} again. Nothing more is needed.",
    },
    "ru": {
        "notify.restored": "Приложение «Яндекс Телемост» снова имеет доступ к {provider}. "
        "Больше ничего делать не нужно.",
    },
}
