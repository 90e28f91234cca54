"""Column names of the survey's long export (one row per response) that analysis reads.

The survey app writes exactly these columns; everything in ``analysis`` refers to them
through these constants so that a rename is one edit.
"""

PARTICIPANT = "participant"  # pseudonym (str); never the Prolific ID
STUDY = "study"  # study slug
POSITION = "position"  # 1-based order of the question in the participant's sequence
METHOD = "method"  # FVR method: one of METHODS
MATCH_SET = "match_set"  # key of the match set (reconstruction + K candidates)
TARGET_IDENTITY = "target_identity"  # identity whose feature vector was reconstructed
IS_ATTENTION_CHECK = "is_attention_check"  # instructed-response item, not data
ATTENTION_PASSED = "attention_passed"  # bool for attention items, NA otherwise
K = "k"  # number of candidates shown (5)
N_TRUE = "n_true"  # candidates among the K that show the target; 0 = target absent
SELECTED_RANKS = "selected_ranks"  # ranks picked, joined by ";" ("" when none)
N_SELECTED = "n_selected"  # number of candidates picked
NONE_SELECTED = "none_selected"  # the explicit "none of these" answer
N_CORRECT = "n_correct"  # picked candidates that are true
ANY_CORRECT = "any_correct"  # at least one picked candidate is true
CONFIDENCE = "confidence"  # Likert 1 ("not confident at all") … 5 ("very confident")
SERVED_AT = "served_at"  # ISO timestamp the question page was served
ANSWERED_AT = "answered_at"  # ISO timestamp the answer was stored
DURATION_S = "duration_s"  # answered_at - served_at in seconds
IS_FAST = "is_fast"  # survey's per-question speed flag
PARTICIPANT_STATUS = "participant_status"  # one of STATUSES
PARTICIPANT_TOTAL_S = "participant_total_s"  # consent to finish in seconds; NA if unfinished
# Participant-level integrity columns of the survey's export, read when present (not required):
PARTICIPANT_FLAGS = "participant_flags"  # integrity flags, ";"-joined ("" when none)
PARTICIPANT_VERIFIED = "participant_verified"  # Prolific confirmed the SESSION_ID; NA: n/a

EXPORT_COLUMNS: tuple[str, ...] = (
    PARTICIPANT,
    STUDY,
    POSITION,
    METHOD,
    MATCH_SET,
    TARGET_IDENTITY,
    IS_ATTENTION_CHECK,
    ATTENTION_PASSED,
    K,
    N_TRUE,
    SELECTED_RANKS,
    N_SELECTED,
    NONE_SELECTED,
    N_CORRECT,
    ANY_CORRECT,
    CONFIDENCE,
    SERVED_AT,
    ANSWERED_AT,
    DURATION_S,
    IS_FAST,
    PARTICIPANT_STATUS,
    PARTICIPANT_TOTAL_S,
)

METHODS: tuple[str, ...] = ("eigenfaces", "nbnet", "naive", "vec2face")

STATUS_ACTIVE = "active"
STATUS_COMPLETED = "completed"
STATUS_NO_CONSENT = "no_consent"
STATUS_FAILED_ATTENTION = "failed_attention"
STATUS_RETURNED = "returned"
STATUS_TIMED_OUT = "timed_out"  # past the study's maximum minutes without finishing
STATUSES: tuple[str, ...] = (
    STATUS_ACTIVE,
    STATUS_COMPLETED,
    STATUS_NO_CONSENT,
    STATUS_FAILED_ATTENTION,
    STATUS_RETURNED,
    STATUS_TIMED_OUT,
)

# Columns that analysis derives (see analysis.outcomes.add_outcomes).
TARGET_PRESENT = "target_present"  # n_true >= 1: the primary outcome is defined here
FALSE_ALARMS = "false_alarms"  # picked candidates that are not true
PRECISION = "precision"  # n_correct / n_selected (NA when nothing picked)
HIT_RATE = "hit_rate"  # n_correct / n_true (NA when target absent)
EXACT_SET = "exact_set"  # picked set equals the true set (none when absent)
CORRECT_NONE = "correct_none"  # target absent and "none" answered (NA when present)
MATCHED_CHANCE = "matched_chance"  # P(any correct) for a random pick of the same size
FLAT_CHANCE = "flat_chance"  # 1/K
CONFIDENT = "confident"  # confidence > 1 (the paper's Table III split)
