;; wagi fault guest: grows its memory 1 MiB at a time, forever (no declared maximum).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (drop (memory.grow (i32.const 16)))
      (br $grow))))
