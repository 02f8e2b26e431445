"""Words of the CRM card tabs (issue 10 item 1): the tab's title and the CRM record lookup's errors."""

MESSAGES = {
    "en": {
        "crm.tab_title": "Telemost meetings",
        "error.crm_entity_invalid": "This CRM record type is not supported.",
        "error.crm_not_found": "The CRM record was not found or has been deleted.",
        "error.crm_access_denied": "You have no access to this CRM record, or the app lacks the CRM permission. "
        "Ask the portal administrator to reinstall the app.",
        "error.crm_unavailable": "Bitrix24 did not answer about the CRM record. Try again in a minute.",
    },
    "ru": {
        "crm.tab_title": "Встречи Телемоста",
        "error.crm_entity_invalid": "Этот тип записи CRM не поддерживается.",
        "error.crm_not_found": "Запись CRM не найдена или удалена.",
        "error.crm_access_denied": "Нет доступа к этой записи CRM, или у приложения нет права на CRM. "
        "Попросите администратора портала переустановить приложение.",
        "error.crm_unavailable": "Битрикс24 не ответил о записи CRM. Попробуйте через минуту.",
    },
}
