//! Sealed credentials' keys: labels, paging for a rotation, conditional reseal.

use crate::support::*;

store_tests!(credential_keys_are_listed_paged_and_resealed);

async fn credential_keys_are_listed_paged_and_resealed(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    bound(store, "i-1", "b-1", Some(sealed("old", b"one"))).await;
    bound(store, "i-1", "b-2", Some(sealed("new", b"two"))).await;
    bound(store, "i-1", "b-3", Some(sealed("old", b"three"))).await;
    bound(store, "i-1", "b-4", Some(sealed("older", b"four"))).await;
    bound(store, "i-1", "b-5", None).await;

    assert_eq!(
        store.credential_key_labels().await.unwrap(),
        vec![
            ("new".to_owned(), 1),
            ("old".to_owned(), 2),
            ("older".to_owned(), 1)
        ]
    );

    let page = store
        .credentials_not_sealed_with("new", "", 2)
        .await
        .unwrap();
    assert_eq!(
        page,
        vec![
            ("b-1".to_owned(), sealed("old", b"one")),
            ("b-3".to_owned(), sealed("old", b"three")),
        ]
    );
    let page = store
        .credentials_not_sealed_with("new", "b-3", 2)
        .await
        .unwrap();
    assert_eq!(page, vec![("b-4".to_owned(), sealed("older", b"four"))]);
    assert!(
        store
            .credentials_not_sealed_with("new", "b-4", 2)
            .await
            .unwrap()
            .is_empty()
    );

    // Resealed only while still under the label the rotation read.
    assert!(
        !store
            .reseal_credentials("b-1", "new", &sealed("new", b"one-resealed"))
            .await
            .unwrap()
    );
    assert!(
        store
            .reseal_credentials("b-1", "old", &sealed("new", b"one-resealed"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .reseal_credentials("b-5", "old", &sealed("new", b"nothing"))
            .await
            .unwrap(),
        "a binding without credentials is left alone"
    );
    assert_eq!(
        store
            .find_binding("b-1")
            .await
            .unwrap()
            .unwrap()
            .credentials,
        Some(sealed("new", b"one-resealed"))
    );
    assert_eq!(
        store
            .find_binding("b-5")
            .await
            .unwrap()
            .unwrap()
            .credentials,
        None
    );
    assert_eq!(
        store.credential_key_labels().await.unwrap(),
        vec![
            ("new".to_owned(), 2),
            ("old".to_owned(), 1),
            ("older".to_owned(), 1)
        ]
    );
}
