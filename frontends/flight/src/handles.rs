//! Statement handles: what GetFlightInfo plans and DoGet runs, one principal's each.
//!
//! ```text
//!  plan(sql) ─► handle (random, owned by the principal) ─► run(handle) ─► batches
//!                 └─ DoPut binds parameters · CancelFlightInfo cancels · idle ones expire
//! ```

use super::*;

/// A query planned for a ticket or a prepared statement.
pub(crate) struct Statement {
    /// Principal id and issuer: only they may run or close it.
    pub(crate) owner: (String, String),
    sql: String,
    pub(crate) prepared: Prepared,
    /// Bound by DoPut (prepared statements).
    pub(crate) params: Vec<ScalarValue>,
    pub(crate) cancel: CancellationToken,
    used: Instant,
    /// A statement ticket that has started: it cannot run again, but stays (cancellable)
    /// until its stream ends.
    started: bool,
}

pub(crate) type Statements = Arc<Mutex<HashMap<Vec<u8>, Statement>>>;

/// Removes a one-shot statement when its result stream ends or is dropped.
pub(crate) struct Forget {
    statements: Statements,
    handle: Vec<u8>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.handle);
    }
}

impl FlightSqlFrontend {
    pub(crate) fn statements(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Statement>> {
        self.statements.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plan SQL for a later DoGet; returns the handle.
    pub(crate) async fn plan(
        &self,
        session: &Session,
        sql: &str,
    ) -> Result<(Vec<u8>, SchemaRef), Status> {
        let sql = &numbered_placeholders(sql);
        let mut prepared = self
            .handler
            .prepare(session, sql)
            .await
            .map_err(|e| status(&e))?;
        if prepared.len() != 1 {
            return Err(Status::invalid_argument(format!(
                "send one statement per request ({} given)",
                prepared.len()
            )));
        }
        let prepared = prepared.remove(0);
        if let Prepared::Session(SessionCommand::Catalog(change)) = &prepared {
            return Err(Status::invalid_argument(format!(
                "{} changes the catalog: send it as a Flight SQL update \
                 (CommandStatementUpdate; ADBC: execute_update)",
                change.tag()
            )));
        }
        if let Prepared::Declare { .. } = &prepared {
            return Err(Status::invalid_argument(
                "cursors (DECLARE … CURSOR) belong to PostgreSQL sessions: a Flight SQL \
                 result already streams as the client reads it",
            ));
        }
        if let Prepared::Session(command) = &prepared {
            return Err(Status::invalid_argument(format!(
                "{command:?} is a session command: Flight SQL sessions have no settings; send queries"
            )));
        }
        let schema = transfer_schema(&prepared.schema());
        let handle = format!(
            "s{}-{}",
            self.next.fetch_add(1, Ordering::Relaxed),
            gateway::auth::generate_token()
        )
        .into_bytes();
        let owner = owner(session);
        let mut statements = self.statements();
        // One principal's statements never crowd out another's.
        let held = || statements.values().filter(|s| s.owner == owner).count();
        if held() >= self.per_principal || statements.len() >= MAX_STATEMENTS {
            statements.retain(|_, s| s.used.elapsed() < STATEMENT_IDLE);
        }
        let held = statements.values().filter(|s| s.owner == owner).count();
        if held >= self.per_principal {
            return Err(status(&QueryError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "{} holds {held} open statements, as many as a principal may \
                     ([limits] max_prepared_statements): close prepared statements you no \
                     longer need",
                    session.principal.name
                ),
            )));
        }
        if statements.len() >= MAX_STATEMENTS {
            return Err(Status::resource_exhausted(
                "too many open statements on this server: try again shortly",
            ));
        }
        statements.insert(
            handle.clone(),
            Statement {
                owner,
                sql: sql.to_string(),
                prepared,
                params: Vec::new(),
                cancel: CancellationToken::new(),
                used: Instant::now(),
                started: false,
            },
        );
        Ok((handle, schema))
    }

    /// A handle's statement, if the session's principal owns it.
    pub(crate) fn owned<T>(
        &self,
        session: &Session,
        handle: &[u8],
        with: impl FnOnce(&mut Statement) -> T,
    ) -> Result<T, Status> {
        let mut statements = self.statements();
        let statement = statements.get_mut(handle).ok_or_else(|| {
            Status::not_found("no such statement: it was closed, already run, or never existed")
        })?;
        if statement.owner != owner(session) {
            return Err(Status::permission_denied(
                "this statement belongs to another principal",
            ));
        }
        statement.used = Instant::now();
        Ok(with(statement))
    }

    /// Run a statement and stream its batches.
    pub(crate) async fn run(
        &self,
        session: Session,
        handle: &[u8],
        once: bool,
    ) -> Result<Response<DoGetStream>, Status> {
        let (prepared, params, cancel, sql, again) = self.owned(&session, handle, |s| {
            let again = once && s.started;
            s.started = true;
            (
                s.prepared.clone(),
                s.params.clone(),
                s.cancel.clone(),
                s.sql.clone(),
                again,
            )
        })?;
        if again {
            return Err(Status::not_found(
                "no such statement: it was closed, already run, or never existed",
            ));
        }
        // A statement ticket runs once; it is forgotten when its stream ends.
        let forget = once.then(|| Forget {
            statements: self.statements.clone(),
            handle: handle.to_vec(),
        });
        let mut session = session;
        tracing::debug!(principal = %session.principal.name, sql = %sql, "flight query");
        let (schema, rows) = tokio::select! {
            outcome = self.handler.execute_arrow(&mut session, &prepared, params) => outcome.map_err(|e| status(&e))?,
            _ = cancel.cancelled() => return Err(Status::cancelled("the query was cancelled")),
        };
        let schema = transfer_schema(&schema);
        let batches = match rows {
            ArrowRows::Batches(batches) => batches,
            ArrowRows::Ipc(mut messages) => {
                // The worker's messages go out as they are when its schema is the one the
                // client was promised (names and types); otherwise they are decoded and
                // re-encoded under the promised names.
                let first = match messages.next().await {
                    Some(first) => first.map_err(|e| status(&e))?,
                    None => return Err(Status::unavailable("the worker sent no schema")),
                };
                let same =
                    Schema::try_from(&first).is_ok_and(|worker| {
                        worker.fields().len() == schema.fields().len()
                            && worker.fields().iter().zip(schema.fields()).all(|(w, p)| {
                                w.name() == p.name() && w.data_type() == p.data_type()
                            })
                    });
                let messages = stream::once(async move { Ok(first) }).chain(messages);
                tracing::debug!(pass_through = same, "flight result from a worker");
                if same {
                    let messages =
                        until_cancelled(messages, cancel, forget).map_err(|e| status(&e));
                    return Ok(Response::new(Box::pin(messages)));
                }
                let decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                    messages.map_err(|e| FlightError::Tonic(Box::new(status(&e)))),
                )
                .map_err(|e| QueryError::new(ErrorKind::WorkerLost, e.to_string()));
                Box::pin(decoded) as gateway::BatchStream
            }
        };
        let target = schema.clone();
        let batches = until_cancelled(batches, cancel, forget)
            .map_err(|e| FlightError::Tonic(Box::new(status(&e))))
            .and_then(move |batch| {
                let target = target.clone();
                async move { for_transfer(batch, &target).map_err(FlightError::from) }
            });
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    /// Cancel the statements a FlightInfo names, of those `session`'s principal owns
    /// (another's handle is as good as unknown).
    pub(crate) fn cancel_info(&self, session: &Session, info: &FlightInfo) -> CancelStatus {
        let mut found = false;
        let owner = owner(session);
        for endpoint in &info.endpoint {
            if let Some(handle) = endpoint
                .ticket
                .as_ref()
                .and_then(|t| handle_of_ticket(&t.ticket))
            {
                if let Some(s) = self.statements().get(&handle) {
                    if s.owner == owner {
                        s.cancel.cancel();
                        found = true;
                    }
                }
            }
        }
        if found {
            CancelStatus::Cancelled
        } else {
            CancelStatus::NotCancellable
        }
    }
}

/// Stop a result stream when its statement is cancelled, ending it with CANCELLED (not as
/// if the result were complete); a one-shot statement is forgotten when the stream ends.
pub(crate) fn until_cancelled<T: Send + 'static>(
    items: impl Stream<Item = Result<T, QueryError>> + Send + 'static,
    cancel: CancellationToken,
    forget: Option<Forget>,
) -> impl Stream<Item = Result<T, QueryError>> + Send + 'static {
    let cancelled = cancel.clone();
    items.take_until(cancel.cancelled_owned()).chain(
        stream::once(async move {
            let _forget = forget;
            cancelled.is_cancelled().then(|| {
                Err(QueryError::new(
                    ErrorKind::Cancelled,
                    "the query was cancelled",
                ))
            })
        })
        .filter_map(|end| async move { end }),
    )
}

/// JDBC/ODBC-style `?` placeholders (what ADBC sends) as the `$1, $2, …` the planner reads.
pub(crate) fn numbered_placeholders(sql: &str) -> String {
    gateway::sqltext::rewrite(
        sql,
        gateway::sqltext::Rewrite {
            question_marks: true,
            ..Default::default()
        },
    )
}

/// Bound parameter values: the first row of the batch DoPut sent, cast to the types the
/// planner expects.
pub(crate) fn params_from(
    batches: &[RecordBatch],
    expected: &[Option<DataType>],
) -> Result<Vec<ScalarValue>, Status> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > 1 {
        return Err(Status::invalid_argument(format!(
            "bind one row of parameters at a time ({rows} given)"
        )));
    }
    let Some(batch) = batches.iter().find(|b| b.num_rows() == 1) else {
        return Ok(Vec::new());
    };
    if batch.num_columns() != expected.len() {
        return Err(Status::invalid_argument(format!(
            "the statement takes {} parameters, {} were bound",
            expected.len(),
            batch.num_columns()
        )));
    }
    let values = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            ScalarValue::try_from_array(column, 0)
                .map_err(|e| Status::invalid_argument(format!("parameter {}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    gateway::handler::bind_parameters(values, expected).map_err(|e| status(&e))
}

pub(crate) fn parameter_schema(types: &[Option<DataType>]) -> Schema {
    Schema::new(
        types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Field::new(
                    format!("${}", i + 1),
                    t.clone().unwrap_or(DataType::Utf8),
                    true,
                )
            })
            .collect::<Vec<_>>(),
    )
}

/// The statement handle a ticket or FlightInfo refers to.
pub(crate) fn handle_of_ticket(ticket: &[u8]) -> Option<Vec<u8>> {
    let any = Any::decode(ticket).ok()?;
    if let Ok(Some(t)) = any.unpack::<TicketStatementQuery>() {
        return Some(t.statement_handle.to_vec());
    }
    if let Ok(Some(p)) = any.unpack::<CommandPreparedStatementQuery>() {
        return Some(p.prepared_statement_handle.to_vec());
    }
    None
}
