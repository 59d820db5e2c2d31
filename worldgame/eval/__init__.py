"""Evaluation: metrics, teacher-forced and closed-loop rollouts, reports."""
