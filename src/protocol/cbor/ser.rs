//! A CBOR serializer for serde that appends to a buffer through inlined
//! writes. It produces the same bytes as `serde_cbor`'s serializer in its
//! default mode (definite lengths where known, the shortest integer heads,
//! floats in the shortest width that keeps the value, enums as maps from
//! the variant's name), at a fraction of the cost: serde_cbor's writes go
//! through calls that are not inlined across crates, which made encoding a
//! `get_nodes` answer the agent's largest cost per request.

use std::fmt::{self, Write as _};

use bytes::BytesMut;
use half::f16;
use serde::ser::{self, Serialize};

/// Where encoded bytes go.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for BytesMut {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A value serde cannot express in CBOR (an integer beyond 64 bits), or a
/// `Serialize` implementation's own error.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Serializes `value` onto the end of `out`.
pub fn to_sink<T: Serialize + ?Sized, S: Sink>(value: &T, out: &mut S) -> Result<(), Error> {
    value.serialize(&mut Encoder {
        out,
        verbatim: false,
    })
}

/// The name of the newtype that `Verbatim` wraps its bytes in: this
/// serializer writes them as they are.
const VERBATIM: &str = "\0zeek_mgmt_agent::cbor::verbatim";

/// Bytes that already are one encoded CBOR data item, written as they are
/// by this serializer (and as a byte string by any other, which never sees
/// one: only this module's callers make them).
pub struct Verbatim<'a>(pub &'a [u8]);

impl Serialize for Verbatim<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        s.serialize_newtype_struct(VERBATIM, &Bytes(self.0))
    }
}

const UINT: u8 = 0;
const NINT: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const NULL: u8 = 0xf6;
const BREAK: u8 = 0xff;

struct Encoder<'a, S: Sink> {
    out: &'a mut S,
    /// Inside a `Verbatim`: bytes are written as they are.
    verbatim: bool,
}

impl<S: Sink> Encoder<'_, S> {
    /// A data item's head: major type and argument, in the fewest bytes.
    #[inline]
    fn head(&mut self, major: u8, v: u64) {
        let m = major << 5;
        if v < 24 {
            self.out.put(&[m | v as u8]);
        } else if v <= u64::from(u8::MAX) {
            self.out.put(&[m | 24, v as u8]);
        } else if v <= u64::from(u16::MAX) {
            let b = (v as u16).to_be_bytes();
            self.out.put(&[m | 25, b[0], b[1]]);
        } else if v <= u64::from(u32::MAX) {
            let b = (v as u32).to_be_bytes();
            self.out.put(&[m | 26, b[0], b[1], b[2], b[3]]);
        } else {
            let b = v.to_be_bytes();
            self.out
                .put(&[m | 27, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        }
    }

    #[inline]
    fn text(&mut self, s: &str) {
        self.head(TEXT, s.len() as u64);
        self.out.put(s.as_bytes());
    }

    #[inline]
    fn int(&mut self, v: i64) {
        if v < 0 {
            // -1 - v, which cannot overflow for any negative i64.
            self.head(NINT, !(v as u64));
        } else {
            self.head(UINT, v as u64);
        }
    }

    /// A collection of `len` items, or of a length told by a final break.
    #[inline]
    fn collection<'s>(&'s mut self, major: u8, len: Option<usize>) -> Compound<'s, S> {
        let open = match len {
            Some(n) => {
                self.head(major, n as u64);
                false
            }
            None => {
                self.out.put(&[major << 5 | 31]);
                true
            }
        };
        Compound {
            out: &mut *self.out,
            open,
        }
    }

    /// A map of one entry, the variant's name to what follows.
    #[inline]
    fn variant(&mut self, variant: &str) {
        self.head(MAP, 1);
        self.text(variant);
    }
}

/// The items of a collection; closes it with a break when its length was
/// not known at the start.
pub struct Compound<'a, S: Sink> {
    out: &'a mut S,
    open: bool,
}

impl<S: Sink> Compound<'_, S> {
    #[inline]
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut Encoder {
            out: &mut *self.out,
            verbatim: false,
        })
    }

    #[inline]
    fn close(self) -> Result<(), Error> {
        if self.open {
            self.out.put(&[BREAK]);
        }
        Ok(())
    }
}

/// `Display` output gathered on the stack when short (addresses, ports).
struct Short {
    buf: [u8; 64],
    len: usize,
    spill: Option<String>,
}

impl fmt::Write for Short {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(spill) = &mut self.spill {
            spill.push_str(s);
        } else if let Some(room) = self.buf.get_mut(self.len..self.len + s.len()) {
            room.copy_from_slice(s.as_bytes());
            self.len += s.len();
        } else {
            let mut spill = String::from_utf8_lossy(&self.buf[..self.len]).into_owned();
            spill.push_str(s);
            self.spill = Some(spill);
        }
        Ok(())
    }
}

impl<'a, 'b, S: Sink> ser::Serializer for &'b mut Encoder<'a, S> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'b, S>;
    type SerializeTuple = Compound<'b, S>;
    type SerializeTupleStruct = Compound<'b, S>;
    type SerializeTupleVariant = Compound<'b, S>;
    type SerializeMap = Compound<'b, S>;
    type SerializeStruct = Compound<'b, S>;
    type SerializeStructVariant = Compound<'b, S>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.put(&[if v { 0xf5 } else { 0xf4 }]);
        Ok(())
    }

    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.int(i64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.int(i64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.int(i64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.int(v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        match (u64::try_from(v), u64::try_from(-1 - v)) {
            (Ok(u), _) => self.head(UINT, u),
            (_, Ok(n)) => self.head(NINT, n),
            _ => return Err(Error("The number can't be stored in CBOR".into())),
        }
        Ok(())
    }

    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.head(UINT, u64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.head(UINT, u64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.head(UINT, u64::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.head(UINT, v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        let v = u64::try_from(v).map_err(|_| Error("The number can't be stored in CBOR".into()))?;
        self.head(UINT, v);
        Ok(())
    }

    #[inline]
    #[allow(clippy::float_cmp)]
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if v.is_infinite() {
            self.out.put(if v > 0.0 {
                &[0xf9, 0x7c, 0]
            } else {
                &[0xf9, 0xfc, 0]
            });
        } else if v.is_nan() {
            self.out.put(&[0xf9, 0x7e, 0]);
        } else if f32::from(f16::from_f32(v)) == v {
            let b = f16::from_f32(v).to_bits().to_be_bytes();
            self.out.put(&[0xf9, b[0], b[1]]);
        } else {
            let b = v.to_bits().to_be_bytes();
            self.out.put(&[0xfa, b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    #[inline]
    #[allow(clippy::float_cmp)]
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if !v.is_finite() || f64::from(v as f32) == v {
            self.serialize_f32(v as f32)
        } else {
            let b = v.to_bits().to_be_bytes();
            self.out
                .put(&[0xfb, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            Ok(())
        }
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.text(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.text(v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        if !self.verbatim {
            self.head(BYTES, v.len() as u64);
        }
        self.out.put(v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result<(), Error> {
        self.out.put(&[NULL]);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.text(variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        if name == VERBATIM {
            return value.serialize(&mut Encoder {
                out: &mut *self.out,
                verbatim: true,
            });
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant(variant);
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'b, S>, Error> {
        Ok(self.collection(ARRAY, len))
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Compound<'b, S>, Error> {
        Ok(self.collection(ARRAY, Some(len)))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'b, S>, Error> {
        Ok(self.collection(ARRAY, Some(len)))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'b, S>, Error> {
        self.variant(variant);
        Ok(self.collection(ARRAY, Some(len)))
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'b, S>, Error> {
        Ok(self.collection(MAP, len))
    }

    #[inline]
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'b, S>, Error> {
        Ok(self.collection(MAP, Some(len)))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'b, S>, Error> {
        self.variant(variant);
        Ok(self.collection(MAP, Some(len)))
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), Error> {
        let mut s = Short {
            buf: [0; 64],
            len: 0,
            spill: None,
        };
        write!(s, "{value}").map_err(|e| Error(e.to_string()))?;
        match &s.spill {
            Some(spill) => self.text(spill),
            None => {
                self.head(TEXT, s.len as u64);
                self.out.put(&s.buf[..s.len]);
            }
        }
        Ok(())
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The traits of collections whose items are values.
macro_rules! items {
    ($($tr:ident::$method:ident),*) => {$(
        impl<S: Sink> ser::$tr for Compound<'_, S> {
            type Ok = ();
            type Error = Error;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.item(value)
            }

            #[inline]
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

items!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// The traits of records: each field is its name, then its value.
macro_rules! fields {
    ($($tr:ident),*) => {$(
        impl<S: Sink> ser::$tr for Compound<'_, S> {
            type Ok = ();
            type Error = Error;

            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                Encoder {
                    out: &mut *self.out,
                    verbatim: false,
                }
                .text(key);
                self.item(value)
            }

            #[inline]
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl<S: Sink> ser::SerializeMap for Compound<'_, S> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.item(key)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.item(value)
    }

    #[inline]
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

#[cfg(test)]
mod tests;
