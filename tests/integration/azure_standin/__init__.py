"""Loopback stand-ins for the Azure services the adapters call through their real SDKs.

Each stand-in is an HTTPS server on 127.0.0.1 that answers the REST operations an SDK issues,
with bodies shaped like the service's (recorded traffic and the official REST examples in
``../shared/data/azureml-rest``), logs every request it serves, and injects faults on demand.
"""
