;; wagi fault guest: traps immediately (unreachable).
(module
  (memory (export "memory") 1)
  (func (export "_start") unreachable))
