//! SMS length: how many segments a text costs, in GSM-7 when every character
//! has a GSM 03.38 encoding, else in UCS-2 (any emoji or most non-Latin text).

use crate::contract::Kind;
use crate::domain::jobs::DispatchJob;
use crate::domain::template::{CompiledTemplate, TemplateError};

/// One SMS as SNS is handed it: the text, and what it costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    pub text: String,
    pub segments: Segments,
    /// Marketing goes as `Promotional` (cheaper, best effort); the rest with the stack's
    /// configured type (`HERALD_SMS_TYPE`, `Transactional` by default).
    pub promotional: bool,
}

/// The SMS of `job` (SMS dispatch and `herald templates preview` both build it here).
pub fn build(template: &CompiledTemplate, job: &DispatchJob) -> Result<SmsMessage, TemplateError> {
    let content =
        template.render_sms(job.locale.as_ref().map(|l| l.as_str()), &job.request.data, &job.recipient_view())?;
    let segments = segments(&content.text);
    Ok(SmsMessage { text: content.text, segments, promotional: job.request.kind == Kind::Marketing })
}

/// GSM 03.38 basic character set (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (an escape plus a septet: two each).
const GSM7_EXTENDED: &str = "\u{0c}^{}\\[~]|€";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub count: usize,
}

pub fn segments(text: &str) -> Segments {
    let gsm: Option<usize> = text
        .chars()
        .map(|c| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENDED.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .sum();
    let (encoding, units, single, multi) = match gsm {
        Some(septets) => (Encoding::Gsm7, septets, 160, 153),
        None => (Encoding::Ucs2, text.encode_utf16().count(), 70, 67),
    };
    let count = if units == 0 {
        0
    } else if units <= single {
        1
    } else {
        units.div_ceil(multi)
    };
    Segments { encoding, units, count }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_segments_at_their_boundaries() {
        let cases = [
            ("", Encoding::Gsm7, 0, 0),
            ("Hello", Encoding::Gsm7, 5, 1),
            (&"a".repeat(160), Encoding::Gsm7, 160, 1),
            (&"a".repeat(161), Encoding::Gsm7, 161, 2),
            (&"a".repeat(306), Encoding::Gsm7, 306, 2),
            (&"a".repeat(307), Encoding::Gsm7, 307, 3),
            // The euro sign takes two septets.
            (&format!("{}€", "a".repeat(158)), Encoding::Gsm7, 160, 1),
            (&format!("{}€", "a".repeat(159)), Encoding::Gsm7, 161, 2),
            ("Commande expédiée à Noël", Encoding::Ucs2, 24, 1),
            (&"é".repeat(200), Encoding::Gsm7, 200, 2),
            (&"ж".repeat(70), Encoding::Ucs2, 70, 1),
            (&"ж".repeat(71), Encoding::Ucs2, 71, 2),
            // An emoji is two UTF-16 units.
            (&format!("{}🎉", "a".repeat(68)), Encoding::Ucs2, 70, 1),
        ];
        for (text, encoding, units, count) in cases {
            assert_eq!(segments(text), Segments { encoding, units, count }, "{text:?}");
        }
    }
}
