//! Inputs shared by the benchmarks.

/// A realistic track call of about 700 bytes, as analytics-node sends it (messageId, timestamps and a library
/// context included).
pub fn track_700() -> Vec<u8> {
    let body = serde_json::json!({
        "type": "track",
        "event": "Order Completed",
        "userId": "user_1234567890",
        "anonymousId": "6f1c2d6e-2f4b-4d0b-9f3e-2b8e1c9a7d55",
        "messageId": "node-next-1732580095123-0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "timestamp": "2026-11-25T23:54:55.123Z",
        "sentAt": "2026-11-25T23:54:55.456Z",
        "properties": {
            "order_id": "50314b8e9bcf000000000000",
            "total": 27.5,
            "revenue": 25.0,
            "currency": "USD",
            "products": [
                {"product_id": "507f1f77bcf86cd799439011", "sku": "45790-32", "name": "Monopoly", "price": 19, "quantity": 1},
                {"product_id": "505bd76785ebb509fc183733", "sku": "46493-32", "name": "Uno", "price": 3, "quantity": 2}
            ]
        },
        "context": {
            "library": {"name": "@segment/analytics-node", "version": "2.1.2"},
            "ip": "203.0.113.7"
        },
        "integrations": {"All": true},
        "_metadata": {"jsRuntime": "node"}
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!((650..=760).contains(&bytes.len()), "the sample is {} bytes", bytes.len());
    bytes
}
