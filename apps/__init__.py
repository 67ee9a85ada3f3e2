"""Handler modules and tools of the PIT vertical slice: tradefill-producer, nav-consumer, nav-analytics, demo."""
