"""Shell programs the planner renders onto servers, loaded with importlib.resources and filled from the plan."""
