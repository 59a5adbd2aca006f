//! CAR parsing of arbitrary bytes must never panic or allocate past the caps.
#![no_main]
use khachapuri_store::car::CarReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(async {
        if let Ok(mut reader) = CarReader::new(data).await {
            while let Ok(Some(_)) = reader.next_block(1 << 20).await {}
        }
    });
});
