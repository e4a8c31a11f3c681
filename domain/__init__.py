"""The domain: identifiers, subjects, outcomes, evidence levels, connector settings and errors. Imports nothing of ours."""
