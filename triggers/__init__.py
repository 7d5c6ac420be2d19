"""Function bindings: parse the trigger, call one service, map the result."""
