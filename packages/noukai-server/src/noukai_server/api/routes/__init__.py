"""HTTP routes: thin adapters from requests to the run service and the store."""
