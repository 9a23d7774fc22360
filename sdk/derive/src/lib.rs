//! wasmesh-sdk-derive: `#[derive(FromJson)]` for plugin configuration types.
//! Reads a struct or a unit enum from the SDK's JSON tree with serde's error texts.
//!
//! serde's derives instantiate a visitor per type with every `visit_*` method and a
//! field-identifier visitor besides: over half of a filter's config code, and about a
//! fifth of the one-VM mesh module. The reader generated here is one function per
//! type, a `match` on the key that calls the field type's own reader; errors are
//! built by non-generic SDK functions.
//!
//! Attributes, under `#[config(...)]`, mean what serde's do: on the type `default`,
//! `deny_unknown_fields` and `rename_all = "camelCase" | "snake_case" | "lowercase"`;
//! on a field `default`, `default = "path"`, `rename = "..."` and `alias = "..."`; on
//! a unit variant `rename = "..."`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr};

#[proc_macro_derive(FromJson, attributes(config))]
pub fn derive_from_json(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let attrs = TypeAttrs::parse(&input.attrs)?;
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => read_struct(input, &attrs, fields),
            _ => Err(syn::Error::new_spanned(
                &input.ident,
                "FromJson reads structs with named fields",
            )),
        },
        Data::Enum(data) => read_unit_enum(input, &attrs, data),
        Data::Union(_) => Err(syn::Error::new_spanned(
            &input.ident,
            "FromJson does not read unions",
        )),
    }
}

#[derive(Default)]
struct TypeAttrs {
    default: bool,
    deny_unknown_fields: bool,
    rename_all: Option<String>,
}

/// Hands each item of every `#[config(...)]` attribute to `item`.
fn each_config_item(
    attrs: &[syn::Attribute],
    mut item: impl FnMut(syn::meta::ParseNestedMeta<'_>) -> syn::Result<()>,
) -> syn::Result<()> {
    for attr in attrs.iter().filter(|a| a.path().is_ident("config")) {
        attr.parse_nested_meta(&mut item)?;
    }
    Ok(())
}

impl TypeAttrs {
    fn parse(attrs: &[syn::Attribute]) -> syn::Result<Self> {
        let mut out = Self::default();
        each_config_item(attrs, |meta| {
            if meta.path.is_ident("default") {
                out.default = true;
            } else if meta.path.is_ident("deny_unknown_fields") {
                out.deny_unknown_fields = true;
            } else if meta.path.is_ident("rename_all") {
                let rule = meta.value()?.parse::<LitStr>()?;
                match rule.value().as_str() {
                    "camelCase" | "snake_case" | "lowercase" => out.rename_all = Some(rule.value()),
                    _ => return Err(meta.error("rename_all: camelCase, snake_case or lowercase")),
                }
            } else {
                return Err(meta.error("unknown config attribute"));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The name a field has in JSON, unless renamed on its own. Fields are
    /// snake_case in Rust.
    fn field_name(&self, ident: &syn::Ident) -> String {
        let rust = ident.to_string();
        match self.rename_all.as_deref() {
            Some("camelCase") => camel_case(&rust),
            Some("lowercase") => rust.to_lowercase(),
            _ => rust,
        }
    }

    /// The name a variant has in JSON, unless renamed on its own. Variants are
    /// CamelCase in Rust.
    fn variant_name(&self, ident: &syn::Ident) -> String {
        let rust = ident.to_string();
        match self.rename_all.as_deref() {
            Some("camelCase") => {
                let mut chars = rust.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_lowercase().chain(chars).collect()
                })
            }
            Some("snake_case") => snake_case(&rust),
            Some("lowercase") => rust.to_lowercase(),
            _ => rust,
        }
    }
}

/// `max_active_faults` → `maxActiveFaults` (fields are snake_case in Rust).
fn camel_case(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `DecodeAndForward` → `decode_and_forward` (variants are CamelCase in Rust).
fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Default)]
struct MemberAttrs {
    rename: Option<String>,
    aliases: Vec<String>,
    default: Option<FieldDefault>,
}

enum FieldDefault {
    Trait,
    Function(syn::ExprPath),
}

impl MemberAttrs {
    /// The name in JSON: the `rename`, else `otherwise` (the type's rule applied).
    fn json_name(&self, otherwise: impl FnOnce() -> String) -> String {
        self.rename.clone().unwrap_or_else(otherwise)
    }

    fn parse(attrs: &[syn::Attribute]) -> syn::Result<Self> {
        let mut out = Self::default();
        each_config_item(attrs, |meta| {
            if meta.path.is_ident("rename") {
                out.rename = Some(meta.value()?.parse::<LitStr>()?.value());
            } else if meta.path.is_ident("alias") {
                out.aliases.push(meta.value()?.parse::<LitStr>()?.value());
            } else if meta.path.is_ident("default") {
                out.default = Some(if meta.input.peek(syn::Token![=]) {
                    FieldDefault::Function(meta.value()?.parse::<LitStr>()?.parse()?)
                } else {
                    FieldDefault::Trait
                });
            } else {
                return Err(meta.error("unknown config attribute"));
            }
            Ok(())
        })?;
        Ok(out)
    }
}

fn read_struct(
    input: &DeriveInput,
    attrs: &TypeAttrs,
    fields: &syn::FieldsNamed,
) -> syn::Result<Tokens> {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let expecting = format!("struct {name}");
    // Statements before the loop over the members, the loop's arms, the names it
    // knows, and (without `default`) the fields built from the slots after it.
    let mut prelude = Vec::new();
    let mut arms = Vec::new();
    let mut known = Vec::new();
    let mut finish = Vec::new();
    for (i, field) in fields.named.iter().enumerate() {
        let Some(ident) = &field.ident else {
            continue;
        };
        let ty = &field.ty;
        let member = MemberAttrs::parse(&field.attrs)?;
        let json = member.json_name(|| attrs.field_name(ident));
        let field_default = match &member.default {
            Some(FieldDefault::Trait) => Some(quote! { ::core::default::Default::default() }),
            Some(FieldDefault::Function(path)) => Some(quote! { #path() }),
            None => None,
        };
        let read = quote! { ::wasmesh_sdk::config::FromJson::from_json(member)? };
        let store = if attrs.default {
            if let Some(value) = &field_default {
                prelude.push(quote! { out.#ident = #value; });
            }
            quote! { out.#ident = #read; }
        } else {
            let slot = format_ident!("field_{i}");
            prelude.push(
                quote! { let mut #slot: ::core::option::Option<#ty> = ::core::option::Option::None; },
            );
            let otherwise = field_default.unwrap_or_else(
                || quote! { <#ty as ::wasmesh_sdk::config::FromJson>::missing(node, #json)? },
            );
            finish.push(quote! {
                #ident: match #slot {
                    ::core::option::Option::Some(value) => value,
                    ::core::option::Option::None => #otherwise,
                },
            });
            quote! { #slot = ::core::option::Option::Some(#read); }
        };
        // The tree refuses a key given twice, but a field and its alias are two keys.
        let once = (!member.aliases.is_empty()).then(|| {
            let seen = format_ident!("seen_{i}");
            prelude.push(quote! { let mut #seen = false; });
            quote! {
                if #seen {
                    return ::core::result::Result::Err(
                        member.error(::core::format_args!("duplicate field `{}`", #json)),
                    );
                }
                #seen = true;
            }
        });
        let names = std::iter::once(&json).chain(&member.aliases);
        arms.push(quote! { #(#names)|* => { #once #store } });
        known.push(json);
    }
    let unknown = if attrs.deny_unknown_fields {
        quote! { _ => return ::core::result::Result::Err(member.unknown_field(key, &[#(#known),*])), }
    } else {
        quote! { _ => {} }
    };
    let read_members = quote! {
        for (key, value) in members {
            let path = node.path.field(key);
            let member = ::wasmesh_sdk::config::Node { value, path: &path };
            match key.as_str() {
                #(#arms)*
                #unknown
            }
        }
    };
    // With the type's own default, the members are read straight into it: no slot
    // per field, and an error drops one value rather than each slot filled so far,
    // which is less code per reader.
    let body = if attrs.default {
        quote! {
            let mut out = <Self as ::core::default::Default>::default();
            #(#prelude)*
            #read_members
            ::core::result::Result::Ok(out)
        }
    } else {
        quote! {
            #(#prelude)*
            #read_members
            ::core::result::Result::Ok(Self { #(#finish)* })
        }
    };
    Ok(quote! {
        impl #impl_generics ::wasmesh_sdk::config::FromJson for #name #ty_generics #where_clause {
            fn from_json(
                node: ::wasmesh_sdk::config::Node<'_, '_>,
            ) -> ::core::result::Result<Self, ::wasmesh_sdk::config::ConfigError> {
                let members = node.members(#expecting)?;
                #body
            }
        }
    })
}

fn read_unit_enum(
    input: &DeriveInput,
    attrs: &TypeAttrs,
    data: &syn::DataEnum,
) -> syn::Result<Tokens> {
    let name = &input.ident;
    let expecting = format!("enum {name}");
    let mut arms = Vec::new();
    let mut known = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            return Err(syn::Error::new_spanned(
                variant,
                "FromJson reads enums whose variants are all units",
            ));
        }
        let member = MemberAttrs::parse(&variant.attrs)?;
        let ident = &variant.ident;
        let json = member.json_name(|| attrs.variant_name(ident));
        let names = std::iter::once(&json).chain(&member.aliases);
        arms.push(quote! { #(#names)|* => ::core::result::Result::Ok(Self::#ident), });
        known.push(json);
    }
    Ok(quote! {
        impl ::wasmesh_sdk::config::FromJson for #name {
            fn from_json(
                node: ::wasmesh_sdk::config::Node<'_, '_>,
            ) -> ::core::result::Result<Self, ::wasmesh_sdk::config::ConfigError> {
                let variant = node.variant(#expecting)?;
                match variant {
                    #(#arms)*
                    _ => ::core::result::Result::Err(node.unknown_variant(variant, &[#(#known),*])),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_follow_serde() {
        assert_eq!(camel_case("max_active_faults"), "maxActiveFaults");
        assert_eq!(camel_case("abort"), "abort");
        assert_eq!(snake_case("DecodeAndForward"), "decode_and_forward");
        assert_eq!(snake_case("Off"), "off");
    }
}
