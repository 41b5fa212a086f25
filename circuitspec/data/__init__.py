"""The prompts: the Dataset type, a task section turned into one, the IOI generator, held-out checks."""
