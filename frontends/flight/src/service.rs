//! The Flight SQL service: each RPC decoded and mapped onto statement handles
//! ([`super::handles`]) or catalog answers ([`super::metadata`]).

use super::*;
use handles::{parameter_schema, params_from};
use metadata::{foreign_keys_schema, primary_keys_schema, strings, TableRef, SQL_INFO, XDBC_TYPES};

#[tonic::async_trait]
impl FlightSqlService for FlightSqlFrontend {
    type FlightService = FlightSqlFrontend;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let session = self.session(request.metadata()).await?;
        let token = token_from(request.metadata())?;
        tracing::info!(principal = %session.principal.name, "flight handshake");
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response = Response::new(
            Box::pin(stream::iter([Ok(response)])) as Pin<Box<dyn Stream<Item = _> + Send>>
        );
        if let Ok(value) = format!("Bearer {token}").parse() {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let (handle, schema) = self.plan(&session, &query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let schema = self.owned(&session, &cmd.prepared_statement_handle, |s| {
            transfer_schema(&s.prepared.schema())
        })?;
        info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        self.run(session, &ticket.statement_handle, true).await
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        self.run(session, &cmd.prepared_statement_handle, false)
            .await
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let session = self.session(request.metadata()).await?;
        let expected = self.owned(&session, &cmd.prepared_statement_handle, |s| {
            s.prepared.param_types().to_vec()
        })?;
        let batches = ipc::decode_bounded(request.into_inner()).await?;
        let params = params_from(&batches, &expected)?;
        self.owned(&session, &cmd.prepared_statement_handle, |s| {
            s.params = params
        })?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(cmd.prepared_statement_handle),
        })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session(request.metadata()).await?;
        let (handle, schema) = self.plan(&session, &query.query).await?;
        let types = self.owned(&session, &handle, |s| s.prepared.param_types().to_vec())?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_bytes(&schema)?,
            parameter_schema: schema_bytes(&parameter_schema(&types))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let session = self.session(request.metadata()).await?;
        self.owned(&session, &query.prepared_statement_handle, |s| {
            s.cancel.cancel()
        })?;
        self.statements()
            .remove(query.prepared_statement_handle.as_ref());
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let session = self.session(request.metadata()).await?;
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("not a FlightInfo: {e}")))?;
        Ok(ActionCancelQueryResult {
            result: self.cancel_info(&session, &info) as i32,
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let action = request.into_inner();
        if action.r#type == "CancelFlightInfo" {
            let req = CancelFlightInfoRequest::decode(action.body).map_err(|e| {
                Status::invalid_argument(format!("not a CancelFlightInfoRequest: {e}"))
            })?;
            let info = req.info.unwrap_or_default();
            let result = CancelFlightInfoResult::new(self.cancel_info(&session, &info));
            let body = arrow_flight::Result::new(result.encode_to_vec());
            return Ok(Response::new(Box::pin(stream::iter([Ok(body)]))));
        }
        Err(Status::invalid_argument(format!(
            "unknown action {:?}",
            action.r#type
        )))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(read_only())
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(read_only())
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(read_only())
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(read_only())
    }

    /// DDL on the catalog managed with SQL; anything else would write: refused.
    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let mut session = self.session(request.metadata()).await?;
        let prepared = self
            .handler
            .prepare(&session, &ticket.query)
            .await
            .map_err(|e| status(&e))?;
        match prepared.as_slice() {
            [change @ Prepared::Session(SessionCommand::Catalog(_))] => {
                self.handler
                    .execute(&mut session, change, Vec::new())
                    .await
                    .map_err(|e| status(&e))?;
                Ok(0)
            }
            _ => Err(read_only()),
        }
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    // --- metadata --------------------------------------------------------------------

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &query.into_builder().schema(), query.as_any())
            .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let mut builder = query.into_builder();
        builder.append(gateway::planner::catalog());
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(
            request,
            &query.clone().into_builder().schema(),
            query.as_any(),
        )
        .await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let batches = self
            .rows(
                &session,
                "SELECT schema_name FROM information_schema.schemata ORDER BY 1",
            )
            .await?;
        let mut builder = query.into_builder();
        for batch in batches {
            for name in strings(&batch, 0)? {
                builder.append(gateway::planner::catalog(), name);
            }
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(
            request,
            &query.clone().into_builder().schema(),
            query.as_any(),
        )
        .await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(request.metadata()).await?;
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        for (schema_name, table, kind) in self.tables(&session).await? {
            let kind = if kind == "BASE TABLE" {
                "TABLE"
            } else {
                kind.as_str()
            };
            let table_schema = if include_schema {
                let sql = format!(
                    "SELECT * FROM \"{}\".\"{}\"",
                    schema_name.replace('"', "\"\""),
                    table.replace('"', "\"\"")
                );
                match self.handler.prepare(&session, &sql).await {
                    Ok(p) => p
                        .first()
                        .map(|p| transfer_schema(&p.schema()))
                        .unwrap_or_else(|| Arc::new(Schema::empty())),
                    Err(_) => Arc::new(Schema::empty()),
                }
            } else {
                Arc::new(Schema::empty())
            };
            builder
                .append(
                    gateway::planner::catalog(),
                    &schema_name,
                    &table,
                    kind,
                    &table_schema,
                )
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &query.into_builder().schema(), query.as_any())
            .await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(
            request,
            &query.clone().into_builder(&SQL_INFO).schema(),
            query.as_any(),
        )
        .await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let builder = query.into_builder(&SQL_INFO);
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(
            request,
            &query.into_builder(&XDBC_TYPES).schema(),
            query.as_any(),
        )
        .await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(request.metadata()).await?;
        let builder = query.into_builder(&XDBC_TYPES);
        Ok(one_batch(builder.schema(), builder.build()))
    }

    // Keys: the tables' informational keys (gateway::keys), as the session may see them.

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &primary_keys_schema(), query.as_any())
            .await
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.primary_keys(
            request,
            query.catalog.as_deref(),
            query.db_schema.as_deref(),
            &query.table,
        )
        .await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &foreign_keys_schema(), query.as_any())
            .await
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let pk = TableRef {
            catalog: query.catalog.as_deref(),
            schema: query.db_schema.as_deref(),
            table: &query.table,
        };
        self.foreign_keys(request, Some(pk), None).await
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &foreign_keys_schema(), query.as_any())
            .await
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let fk = TableRef {
            catalog: query.catalog.as_deref(),
            schema: query.db_schema.as_deref(),
            table: &query.table,
        };
        self.foreign_keys(request, None, Some(fk)).await
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.describe(request, &foreign_keys_schema(), query.as_any())
            .await
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let pk = TableRef {
            catalog: query.pk_catalog.as_deref(),
            schema: query.pk_db_schema.as_deref(),
            table: &query.pk_table,
        };
        let fk = TableRef {
            catalog: query.fk_catalog.as_deref(),
            schema: query.fk_db_schema.as_deref(),
            table: &query.fk_table,
        };
        self.foreign_keys(request, Some(pk), Some(fk)).await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
