"""Words of the token keeper: errors of the token endpoint and request-time refresh."""

MESSAGES = {
    "en": {
        "error.credential_broken": (
            "The stored credential cannot be decrypted with the configured encryption keys. Put the missing "
            "key back into TOKEN_ENCRYPTION_KEY and run `flask tokens rotate-key`, or connect the account again."
        ),
    },
    "ru": {
        "error.credential_broken": (
            "Сохранённые токены не расшифровываются текущими ключами шифрования. Верните недостающий ключ "
            "в TOKEN_ENCRYPTION_KEY и выполните `flask tokens rotate-key` или подключите аккаунт заново."
        ),
    },
}
