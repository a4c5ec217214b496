"""Department adapters: one module per department behind the `DepartmentAdapter` protocol."""
