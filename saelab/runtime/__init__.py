"""Runtime helpers every stage shares: multi-host setup (`distributed`), progress bars (`progress`) and
argparse flags generated from pydantic configs (`cliargs`). No stage logic lives here."""
