"""The web studio: JSON API, server-sent events and the pages, mounted on the collector's HTTP app."""
