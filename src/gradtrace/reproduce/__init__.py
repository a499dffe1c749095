"""The reproduction of the papers' findings on the remedies (`gradtrace reproduce`).

claims.py   each published claim: the runs it needs and its pass criterion
run.py      the runs as one resumable sweep, the judging, the table and the figures
"""

from gradtrace.reproduce.claims import Claim, cpu_claims, full_claims
from gradtrace.reproduce.run import claims_of, reproduce

__all__ = ["Claim", "claims_of", "cpu_claims", "full_claims", "reproduce"]
