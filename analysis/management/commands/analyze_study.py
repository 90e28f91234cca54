"""`manage.py analyze_study SLUG`: write a study's report and print its headline numbers."""

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analysis.crossed import SMALL_FACE_POOL
from analysis.services import AnalysisError, study_analyze
from survey.models import Study


def study_by_slug(slug: str) -> Study:
    """The study with this slug, or a CommandError listing the known slugs."""
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        known = ", ".join(Study.objects.order_by("slug").values_list("slug", flat=True)) or "none"
        raise CommandError(f"No study with slug '{slug}'. Known studies: {known}.")
    return study


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}%"


class Command(BaseCommand):
    help = (
        "Analyse a study's responses under its pre-registered analysis plan: writes report.md, "
        "report.html, figures, responses_long.csv, summary.json and config.json, records an "
        "AnalysisRun, and prints the headline numbers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the study's slug")
        parser.add_argument(
            "--out",
            metavar="DIR",
            type=Path,
            help="report folder (default: var/reports/<slug>-<timestamp>/)",
        )
        parser.add_argument(
            "--sensitivity",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="also report everyone included, without exclusions (default: the plan's "
            "setting, which defaults to on)",
        )
        parser.add_argument(
            "--resamples",
            type=int,
            metavar="N",
            help="bootstrap resamples (default: the plan's n_resamples, else 1999)",
        )

    def handle(self, *args: object, **options: object) -> None:
        study = study_by_slug(options["slug"])
        overrides = {
            key: options[option]
            for key, option in (("sensitivity", "sensitivity"), ("n_resamples", "resamples"))
            if options[option] is not None
        }
        try:
            run = study_analyze(
                study=study,
                out_dir=options["out"],
                overrides=overrides,
                actor="command:analyze_study",
            )
        except AnalysisError as error:
            raise CommandError(str(error)) from error
        top = run.summary
        write = self.stdout.write
        write(f"Report for '{study.slug}' in {run.duration_s:.1f} s: {run.folder / 'report.html'}")
        write(f"  (also report.md, summary.json, figures/ in {run.folder})")
        self._write_plan(top["preregistration"])
        self._write_flow(top)
        self._write_accuracy(top, level=f"{run.config['confidence_level']:.0%} CI")
        omnibus = top.get("omnibus")
        if omnibus:
            write(
                f"Methods differ (crossed Wald): F({omnibus['df_num']}, {omnibus['df_den']}) = "
                f"{omnibus['f']:.2f}, p = {omnibus['p']:.3g}"
            )

    def _write_plan(self, pre: dict[str, Any]) -> None:
        """Whether the plan was frozen, and any deviation or unknown keys."""
        write = self.stdout.write
        if pre["frozen_plan_sha256"] is None:
            write(self.style.WARNING("Plan: not pre-registered (the study never opened)."))
        elif pre["deviates"]:
            write(
                self.style.ERROR(
                    f"Plan: DEVIATION — frozen {pre['frozen_plan_sha256'][:12]}…, "
                    f"used {pre['plan_sha256'][:12]}…"
                )
            )
        else:
            write(f"Plan: frozen {pre['frozen_plan_sha256'][:12]}…, no deviation.")
        if pre["unknown_keys"]:
            write(self.style.WARNING(f"Unknown plan keys (ignored): {pre['unknown_keys']}"))

    def _write_flow(self, top: dict[str, Any]) -> None:
        """Arrivals, participants and responses kept, each exclusion, and speed flags."""
        write = self.stdout.write
        arrivals = top.get("arrivals") or {}
        if arrivals:
            write(
                f"Arrivals: {arrivals['entered']} entered; {arrivals['declined_consent']} declined "
                f"consent, {arrivals['left_before_questions']} left and "
                f"{arrivals['in_progress_before_questions']} are still before the first question; "
                f"{arrivals['reached_questions']} reached a question."
            )
        write(
            f"Participants: {top['n_participants_export']} in the export, "
            f"{top['n_participants_analysed']} analysed; "
            f"responses: {top['n_responses_export']} → {top['n_responses_analysed']}."
        )
        write("Exclusions (participants / responses removed, in order):")
        for step in top["exclusions"]:
            write(
                f"  {step['rule']:<18} {step['participants_removed']:>5} "
                f"/ {step['responses_removed']:>6}"
            )
        speed = top.get("speeders")
        if speed and speed["answers"]:
            write(
                f"Speed flags: {speed['fast_answers']} of {speed['answers']} answers, "
                f"{speed['participants_mostly_fast']} participants flagged on half or more "
                f"({speed['analysed_fast_answers']} flagged answers among those analysed)."
            )

    def _write_accuracy(self, top: dict[str, Any], *, level: str) -> None:
        """The accuracy table, with a warning for methods shown on few faces."""
        write = self.stdout.write
        write(f"Accuracy (≥ 1 true match; chance 1/K = {_pct(top['flat_chance']).strip()}):")
        write(f"  {top['inference']}")
        write(
            f"  {'method':<12} {'acc':>6}  {level + ' (crossed)':<18} {'faces':>5} "
            f"{'matched':>7} {'p > chance':>10}  n"
        )
        small = []
        for row in top["accuracy"]:
            p = row["p_above_chance"]
            ci = f"[{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"
            write(
                f"  {row['method']:<12} {_pct(row['accuracy'])}  {ci:<18} {row['n_faces']:>5} "
                f"{_pct(row['matched_chance']):>7} {'n/a' if p is None else f'{p:.2g}':>10}  "
                f"{row['n_responses']} ({row['n_participants']} participants)"
            )
            if row["n_faces"] < SMALL_FACE_POOL:
                small.append(row["method"])
        if small:
            write(
                self.style.WARNING(
                    f"Few faces (< {SMALL_FACE_POOL}) for {', '.join(small)}: wide intervals; "
                    "more match sets, not more participants, would narrow them."
                )
            )
