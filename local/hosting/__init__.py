"""The floor of the local runtime that runs the app: the Functions host, the Durable Task engine,
Azurite and the SMTP server it starts, and the demo. It may import the app (``composition``,
``triggers``) and the local Azure ML workspace below it (``local.aml``); nothing below imports it.
"""
