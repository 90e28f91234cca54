from django.apps import AppConfig


class ReconstructionConfig(AppConfig):
    name = "reconstruction"
    verbose_name = "Reconstruction"

    def ready(self) -> None:
        """Register the recognizer observers with the survey's bots (torch loads on use)."""
        from reconstruction.studies.observers import observers_register

        observers_register()
