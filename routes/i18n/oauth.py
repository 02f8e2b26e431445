"""Words of the OAuth code flow (/auth/bitrix24): the portal form and its refusals."""

MESSAGES = {
    "en": {
        "oauth.start.title": "Sign in with Bitrix24",
        "oauth.start.lead": "Enter the address of your Bitrix24 portal: you will sign in there and come back here.",
        "oauth.start.portal_label": "Bitrix24 portal",
        "oauth.start.button": "Continue",
        "oauth.refused.title": "Could not sign in with Bitrix24",
        "error.portal_domain_required": "Enter the address of your Bitrix24 portal.",
        "error.app_not_on_portal": "The application is not installed on the portal {domain}. Ask the portal's "
        "administrator to install it, or check the address.",
        "error.state_invalid": "This sign-in link is not valid. Start again from the app's address.",
        "error.state_used": "This sign-in was already used. Start again from the app's address.",
        "error.state_expired": "This sign-in took too long. Start again from the app's address.",
        "error.state_other_browser": "This sign-in was started in another browser. Start again in this one.",
        "error.consent_denied": "Bitrix24 did not grant access. Start again if you want to.",
        "error.code_refused": "Bitrix24 refused the sign-in code. Start again from the app's address.",
        "error.no_web_session": "You are not signed in. Open the app's address to sign in with Bitrix24.",
    },
    "ru": {
        "oauth.start.title": "Вход через Bitrix24",
        "oauth.start.lead": "Введите адрес вашего портала Bitrix24: вы войдёте на нём и вернётесь сюда.",
        "oauth.start.portal_label": "Портал Bitrix24",
        "oauth.start.button": "Продолжить",
        "oauth.refused.title": "Не удалось войти через Bitrix24",
        "error.portal_domain_required": "Введите адрес вашего портала Bitrix24.",
        "error.app_not_on_portal": "Приложение не установлено на портале {domain}. Попросите администратора "
        "портала установить его или проверьте адрес.",
        "error.state_invalid": "Ссылка для входа недействительна. Начните заново с адреса приложения.",
        "error.state_used": "Этот вход уже использован. Начните заново с адреса приложения.",
        "error.state_expired": "Вход занял слишком много времени. Начните заново с адреса приложения.",
        "error.state_other_browser": "Вход был начат в другом браузере. Начните заново в этом.",
        "error.consent_denied": "Bitrix24 не предоставил доступ. Начните заново, если нужно.",
        "error.code_refused": "Bitrix24 отклонил код входа. Начните заново с адреса приложения.",
        "error.no_web_session": "Вы не вошли. Откройте адрес приложения, чтобы войти через Bitrix24.",
    },
}
