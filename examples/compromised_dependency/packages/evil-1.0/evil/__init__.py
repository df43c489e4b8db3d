"""evil 1.0: a harmless text helper the app depends on."""


def slugify(text: str) -> str:
    return "-".join(text.lower().split())
