from django.apps import AppConfig


class SurveyConfig(AppConfig):
    name = "survey"
    verbose_name = "Participant study"

    def ready(self) -> None:
        # A study saved or deleted in this process is dropped from the studies it keeps.
        from survey import studies  # noqa: F401
