//! Bookinfo's fixed data: one book, its details, two reviews and their ratings.

use serde::Serialize;

pub const PRODUCT_ID: u32 = 0;
pub const TITLE: &str = "The Comedy of Errors";
pub const SUMMARY: &str = "Wikipedia Summary: The Comedy of Errors is one of William \
    Shakespeare's early plays. It is his shortest and one of his most farcical comedies, \
    with a major part of the humour coming from slapstick and mistaken identity, in \
    addition to puns and word play.";

#[derive(Debug, Serialize)]
pub struct Details {
    pub id: u32,
    pub author: &'static str,
    pub year: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub pages: u32,
    pub publisher: &'static str,
    pub language: &'static str,
    #[serde(rename = "ISBN-10")]
    pub isbn10: &'static str,
    #[serde(rename = "ISBN-13")]
    pub isbn13: &'static str,
}

pub fn details(id: u32) -> Details {
    Details {
        id,
        author: "William Shakespeare",
        year: 1595,
        kind: "paperback",
        pages: 200,
        publisher: "PublisherA",
        language: "English",
        isbn10: "1234567890",
        isbn13: "123-1234567890",
    }
}

pub struct Review {
    pub reviewer: &'static str,
    pub text: &'static str,
    pub stars: u8,
}

pub const REVIEWS: &[Review] = &[
    Review {
        reviewer: "Reviewer1",
        text: "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
        stars: 5,
    },
    Review {
        reviewer: "Reviewer2",
        text: "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
        stars: 4,
    },
];
