"""The demo Spread node: a Django project that serves the Spread apps."""
