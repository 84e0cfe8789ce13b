"""mediaeval-mem: a harness for the MediaEval Predicting Media Memorability challenge.

Pipeline, one subpackage per stage:
    datasets -> video -> encoders -> features -> (models -> training -> tracking -> submission)
"""

__version__ = "0.1.0"
