"""Seeded Bitrix24 users: the same 60 people on every portal, so tests can rely on names and paging."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

USER_COUNT = 60
DISMISSED_USER_ID = 7
TIME_ZONE = "Europe/Moscow"

_FIXED = {
    1: ("Иван", "Петров", "M", "Генеральный директор"),
    2: ("Мария", "Смирнова", "F", "Менеджер по продажам"),
    3: ("John", "Smith", "M", "Developer"),
}
_CYR_MEN = ["Алексей", "Дмитрий", "Сергей", "Андрей", "Николай", "Павел", "Олег", "Егор"]
_CYR_MEN_LAST = ["Иванов", "Кузнецов", "Попов", "Соколов", "Лебедев", "Козлов", "Новиков", "Морозов"]
_CYR_WOMEN = ["Анна", "Елена", "Ольга", "Наталья", "Татьяна", "Ирина", "Светлана", "Юлия"]
_CYR_WOMEN_LAST = ["Волкова", "Фёдорова", "Михайлова", "Белова", "Орлова", "Зайцева", "Ковалёва", "Егорова"]
_LAT_FIRST = [("Emma", "F"), ("Oliver", "M"), ("Sophia", "F"), ("Liam", "M"), ("Mia", "F"), ("Noah", "M")]
_LAT_LAST = ["Johnson", "Brown", "Miller", "Davis", "Garcia", "Wilson", "Taylor", "Clark"]
_POSITIONS = ["Менеджер", "Бухгалтер", "Engineer", "Designer", "Аналитик", "Support", "Юрист", "Marketing"]
_TRANSLIT = str.maketrans(
    {
        "а": "a",
        "б": "b",
        "в": "v",
        "г": "g",
        "д": "d",
        "е": "e",
        "ё": "e",
        "ж": "zh",
        "з": "z",
        "и": "i",
        "й": "y",
        "к": "k",
        "л": "l",
        "м": "m",
        "н": "n",
        "о": "o",
        "п": "p",
        "р": "r",
        "с": "s",
        "т": "t",
        "у": "u",
        "ф": "f",
        "х": "h",
        "ц": "ts",
        "ч": "ch",
        "ш": "sh",
        "щ": "sch",
        "ы": "y",
        "э": "e",
        "ю": "yu",
        "я": "ya",
        "ь": "",
        "ъ": "",
    }
)


@dataclass
class User:
    id: int
    name: str
    last_name: str
    gender: str
    position: str
    email: str
    active: bool = True
    admin: bool = False
    departments: list[int] = field(default_factory=lambda: [1])
    user_type: str = "employee"
    is_bot: bool = False

    @property
    def full_name(self) -> str:
        """Display name as Bitrix24 shows it."""
        return f"{self.name} {self.last_name}".strip()

    def rest_current(self) -> dict[str, Any]:
        """Row in the shape of user.current."""
        return {
            "ID": str(self.id),
            "ACTIVE": self.active,
            "NAME": self.name,
            "LAST_NAME": self.last_name,
            "EMAIL": self.email,
            "LAST_LOGIN": "2024-07-23T08:07:26+03:00",
            "DATE_REGISTER": "2024-07-22T00:00:00+03:00",
            "IS_ONLINE": "Y" if self.id % 3 == 1 else "N",
            "LAST_ACTIVITY_DATE": "2024-07-23 08:08:50",
            "PERSONAL_GENDER": self.gender,
            "PERSONAL_BIRTHDAY": "",
            "WORK_POSITION": self.position,
            "UF_EMPLOYMENT_DATE": "",
            "UF_DEPARTMENT": list(self.departments),
        }

    def rest_get(self) -> dict[str, Any]:
        """Row in the shape of user.get."""
        return {
            "ID": str(self.id),
            "ACTIVE": self.active,
            "NAME": self.name,
            "LAST_NAME": self.last_name,
            "SECOND_NAME": "",
            "EMAIL": self.email,
            "LAST_LOGIN": "2024-07-25T13:06:54+03:00",
            "DATE_REGISTER": "2024-07-15T00:00:00+03:00",
            "TIME_ZONE": TIME_ZONE,
            "IS_ONLINE": "Y" if self.id % 3 == 1 else "N",
            "TIMESTAMP_X": {},
            "LAST_ACTIVITY_DATE": {},
            "PERSONAL_GENDER": self.gender,
            "PERSONAL_WWW": "",
            "PERSONAL_BIRTHDAY": "",
            "PERSONAL_MOBILE": "",
            "PERSONAL_CITY": "",
            "WORK_PHONE": "",
            "WORK_POSITION": self.position,
            "UF_EMPLOYMENT_DATE": "",
            "UF_DEPARTMENT": list(self.departments),
            "USER_TYPE": self.user_type,
        }

    def profile(self) -> dict[str, Any]:
        """Result of the profile method."""
        return {
            "ID": str(self.id),
            "ADMIN": self.admin,
            "NAME": self.name,
            "LAST_NAME": self.last_name,
            "PERSONAL_GENDER": self.gender,
            "TIME_ZONE": TIME_ZONE,
        }


def _email(name: str, last_name: str, uid: int) -> str:
    local = f"{name}.{last_name}".lower().translate(_TRANSLIT)
    return f"{local}.{uid}@sandbox.example"


def seed_users() -> dict[int, User]:
    """Build the deterministic user list (user 1 is the admin, one user is dismissed)."""
    users: dict[int, User] = {}
    for uid in range(1, USER_COUNT + 1):
        if uid in _FIXED:
            name, last, gender, position = _FIXED[uid]
        elif uid % 3 == 0:
            name, gender = _LAT_FIRST[uid % len(_LAT_FIRST)]
            last, position = _LAT_LAST[uid % len(_LAT_LAST)], _POSITIONS[uid % len(_POSITIONS)]
        elif uid % 2 == 0:
            name, last, gender = _CYR_WOMEN[uid % 8], _CYR_WOMEN_LAST[(uid // 8) % 8], "F"
            position = _POSITIONS[uid % len(_POSITIONS)]
        else:
            name, last, gender = _CYR_MEN[uid % 8], _CYR_MEN_LAST[(uid // 8) % 8], "M"
            position = _POSITIONS[uid % len(_POSITIONS)]
        users[uid] = User(
            id=uid,
            name=name,
            last_name=last,
            gender=gender,
            position=position,
            email=_email(name, last, uid),
            active=uid != DISMISSED_USER_ID,
            admin=uid == 1,
            departments=[1] if uid <= 3 else [1 + uid % 4],
        )
    return users
