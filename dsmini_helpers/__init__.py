"""DeepSeek-Mini: the package exported from the book's notebooks."""
